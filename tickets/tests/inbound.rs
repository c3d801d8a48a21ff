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

use testkit::fixtures::CardCheck;

/// Stores and checks one message of `client` in the inbound transaction, as the consumer does.
async fn take_in(
    store: &PgStore,
    check: &CardCheck,
    client: &str,
    body: &str,
) -> anyhow::Result<(NewClientMessage, tickets::inbound::Intake)> {
    let m = message(client, client, body);
    let intake = store
        .intake_batch(std::slice::from_ref(&m), &[], Some(check))
        .await?;
    Ok((m, intake))
}

/// The one ticket `manager` holds.
async fn the_ticket_of(store: &PgStore, manager: &str) -> anyhow::Result<tickets::Ticket> {
    let mut tickets = store.manager_tickets(manager, &[]).await?;
    anyhow::ensure!(tickets.len() == 1, "{manager} holds {tickets:?}");
    Ok(tickets.remove(0))
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_half_of_a_split_card_a_manager_saw_is_withdrawn_when_the_rest_arrives(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let check = CardCheck::new()?;
    store
        .set_ready(&testkit::fixtures::manager("alice"), 3)
        .await?;
    take_in(&store, &check, "ana", "hello").await?;
    let ticket = the_ticket_of(&store, "alice").await?;
    // Alice has the ticket: the first half reaches her live (`message_visible`).
    let (first, _) = take_in(&store, &check, "ana", "my new card starts with 4000 0566").await?;
    let shown = store
        .manager_messages_page("alice", ticket.id, None, 50)
        .await?;
    assert_eq!(shown.items.len(), 2, "the first half passed on its own");

    let (rest, intake) = take_in(&store, &check, "ana", "5566 5556").await?;
    assert_eq!((intake.blocked, intake.withdrawn), (1, 1), "{intake:?}");

    // Both halves are blocked now, stored without their digits; alice's view has neither.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT afc_status, body FROM messages WHERE id = ANY($1) ORDER BY created_at",
    )
    .bind([first.id, rest.id])
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        rows,
        [
            ("blocked".into(), "my new card starts with **** ****".into()),
            ("blocked".into(), "**** ****".into()),
        ]
    );
    let shown = store
        .manager_messages_page("alice", ticket.id, None, 50)
        .await?;
    let bodies: Vec<&str> = shown
        .items
        .iter()
        .map(|m| m.message.body.as_str())
        .collect();
    assert_eq!(bodies, ["hello"]);

    // Her feed tells her to drop it, and a re-read of it holds no text of it any more.
    let feed = store.manager_events_after("alice", 0, 100).await?;
    let withdrawn = feed
        .iter()
        .find(|e| e.kind == "message_withdrawn")
        .ok_or_else(|| anyhow::anyhow!("no message_withdrawn for alice: {feed:?}"))?;
    assert_eq!(withdrawn.payload["message_id"], first.id.to_string());
    let visible = feed
        .iter()
        .find(|e| e.kind == "message_visible")
        .ok_or_else(|| anyhow::anyhow!("no message_visible: {feed:?}"))?;
    assert_eq!(visible.payload["body"], "");
    assert_eq!(visible.payload["withdrawn"], true);
    // The client is told too (their view drops their own first half).
    let to_client: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE kind = 'message_withdrawn' AND client_id = 'ana'
         AND client_visible",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(to_client, 1);
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn both_halves_of_a_card_in_one_batch_are_blocked_and_none_is_shown(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let check = CardCheck::new()?;
    store
        .set_ready(&testkit::fixtures::manager("carl"), 3)
        .await?;
    let batch = [
        message("bo", "Bo", "hello"),
        message("bo", "Bo", "card 4000 0566"),
        message("bo", "Bo", "5566 5556"),
    ];
    let intake = store.intake_batch(&batch, &[], Some(&check)).await?;
    assert_eq!(
        (intake.passed, intake.blocked, intake.withdrawn),
        (1, 2, 0),
        "{intake:?}"
    );
    // Carl got the ticket (it was queued by the greeting) and reads the greeting only.
    let ticket = the_ticket_of(&store, "carl").await?;
    let shown = store
        .manager_messages_page("carl", ticket.id, None, 50)
        .await?;
    let bodies: Vec<&str> = shown
        .items
        .iter()
        .map(|m| m.message.body.as_str())
        .collect();
    assert_eq!(bodies, ["hello"]);
    Ok(())
}

/// The answer to the satisfaction question rates the closed ticket on any channel (the inbound
/// transaction is every channel's): it opens no new ticket, the client and the manager hear of
/// it, and the supervisor's figures count it. A second answer, or one to a close that asked
/// nothing, is an ordinary message.
#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn an_answer_to_the_rating_question_rates_the_closed_ticket_and_opens_none(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let check = CardCheck::new()?;
    store
        .set_ready(&testkit::fixtures::manager("alice"), 3)
        .await?;
    take_in(&store, &check, "tg:7", "my transfer is stuck").await?;
    let ticket = the_ticket_of(&store, "alice").await?;
    store
        .close_ticket(ticket.id, "resolved", "Closed.", Some("How did we do? 1-5"))
        .await?;

    let (_, intake) = take_in(&store, &check, "tg:7", "5").await?;
    assert_eq!((intake.rated, intake.opened.len()), (1, 0), "{intake:?}");
    let rated = store.manager_ticket("alice", ticket.id).await?;
    assert_eq!(rated.rating, Some(5));
    let events: Vec<(String, bool, Option<String>)> = sqlx::query_as(
        "SELECT payload->>'rating', client_visible, manager_id FROM events
         WHERE kind = 'satisfaction_recorded'",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(events, [("5".into(), true, Some("alice".into()))]);
    let stats = store.stats(24).await?;
    assert_eq!(stats.ratings, [0, 0, 0, 0, 1]);
    assert_eq!(
        stats.first_response_secs,
        Vec::<i64>::new(),
        "nobody replied"
    );

    // Rated once: the next "4" is a message of a new ticket.
    let (_, intake) = take_in(&store, &check, "tg:7", "4").await?;
    assert_eq!((intake.rated, intake.opened.len()), (0, 1), "{intake:?}");
    assert_eq!(
        store.manager_ticket("alice", ticket.id).await?.rating,
        Some(5)
    );

    // A close that asked nothing takes no rating either.
    take_in(&store, &check, "web:bo", "hello").await?;
    let bos =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM tickets WHERE client_id = 'web:bo'")
            .fetch_one(&pool)
            .await?;
    store.close_ticket(bos, "resolved", "Closed.", None).await?;
    let (_, intake) = take_in(&store, &check, "web:bo", "3").await?;
    assert_eq!((intake.rated, intake.opened.len()), (0, 1), "{intake:?}");
    Ok(())
}

/// The supervisor's figures: each queue now with its oldest wait, the waiting series per queue,
/// first-response times.
#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_supervisor_figures_count_waiting_tickets_per_queue_and_first_responses(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let check = CardCheck::new()?;
    for c in ["web:a", "web:b"] {
        store
            .intake_batch(&[message(c, c, "hello")], &[], Some(&check))
            .await?;
    }
    // One waited ten minutes already.
    sqlx::query("UPDATE tickets SET waiting_since = now() - interval '10 minutes' WHERE client_id = 'web:a'")
        .execute(&pool)
        .await?;
    let stats = store.stats(2).await?;
    assert_eq!(stats.queues.len(), 1, "{:?}", stats.queues);
    assert_eq!(stats.queues[0].waiting, 2);
    assert!(
        (600..700).contains(&stats.queues[0].oldest_wait_secs),
        "{:?}",
        stats.queues
    );
    assert_eq!(stats.bucket_secs, 300);
    let last = stats.waiting.last().map(|(_, _, n)| *n);
    assert_eq!(last, Some(2), "both wait at the end of the period");
    let early: i32 = stats
        .waiting
        .iter()
        .filter(|(_, at, _)| *at < chrono::Utc::now() - chrono::Duration::minutes(30))
        .map(|(_, _, n)| *n)
        .sum();
    assert_eq!(early, 0, "nobody waited an hour ago");

    // Alice takes one and answers after it waited ten minutes.
    store
        .set_ready(&testkit::fixtures::manager("alice"), 1)
        .await?;
    let t = the_ticket_of(&store, "alice").await?;
    sqlx::query("UPDATE tickets SET first_response_at = waiting_since + interval '90 seconds' WHERE id = $1")
        .bind(t.id)
        .execute(&pool)
        .await?;
    let stats = store.stats(2).await?;
    assert_eq!(stats.first_response_secs, [90]);
    assert_eq!(stats.queues[0].waiting, 1);
    Ok(())
}
