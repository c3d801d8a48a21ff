//! A given-up delivery is a `failed` ledger row and one `delivery_failed` event for the ticket's
//! manager, written together; recording it again changes nothing. Real PostgreSQL; `#[sqlx::test]`
//! gives each test its own migrated database.

use serde_json::Value;
use sqlx::PgPool;
use tickets::PgStore;
use uuid::Uuid;

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_failed_delivery_is_a_failed_row_and_one_event_for_the_tickets_manager(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let (client, manager, ticket) = ("email:ivan@client.test", "alice", Uuid::new_v4());
    sqlx::query("INSERT INTO clients (id) VALUES ($1)")
        .bind(client)
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO managers (id, capacity) VALUES ($1, 3)")
        .bind(manager)
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO tickets (id, client_id, status, manager_id) VALUES ($1, $2, 'assigned', $3)",
    )
    .bind(ticket)
    .bind(client)
    .bind(manager)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO events (dedup_key, kind, ticket_id, client_id, client_visible, manager_id,
                             payload)
         VALUES ('reply-1', 'manager_reply', $1, $2, true, $3, '{\"body\": \"hi\"}')",
    )
    .bind(ticket)
    .bind(client)
    .bind(manager)
    .execute(&pool)
    .await?;
    assert_eq!(store.sequence_events().await?, 1);
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM events WHERE dedup_key = 'reply-1'")
        .fetch_one(&pool)
        .await?;
    assert!(store.claim_delivery(seq, "email", client).await?);

    for _ in 0..2 {
        store
            .fail_delivery(seq, "email", 3, "smtp: 451 try again later")
            .await?;
    }

    let ledger = store.deliveries_of("email", client).await?;
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].status.as_str(), ledger[0].attempts),
        ("failed", 3)
    );
    let events: Vec<(Option<Uuid>, Option<String>, bool, Value)> = sqlx::query_as(
        "SELECT ticket_id, manager_id, client_visible, payload FROM events
         WHERE kind = 'delivery_failed'",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(events.len(), 1, "recorded once: {events:?}");
    let (t, m, client_visible, payload) = &events[0];
    assert_eq!(
        (*t, m.as_deref(), *client_visible),
        (Some(ticket), Some(manager), false)
    );
    assert_eq!(payload["event_seq"], seq);
    assert_eq!(payload["event_kind"], "manager_reply");
    assert_eq!(payload["detail"], "smtp: 451 try again later");

    // A delivery never claimed has no row to fail: nothing is written.
    store.fail_delivery(seq + 1000, "email", 1, "x").await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'delivery_failed'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(count, 1);
    Ok(())
}
