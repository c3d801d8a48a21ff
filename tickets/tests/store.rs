//! The store against a real PostgreSQL (`#[sqlx::test]` gives each test its own migrated database;
//! `make test` points DATABASE_URL at the project's cluster).

use sqlx::PgPool;
use testkit::fixtures::{manager, web_message};
use tickets::{PgStore, StoreError, TicketStatus, Verdict};
use uuid::Uuid;

async fn client_message(store: &PgStore, client: &str, body: &str) -> Result<Uuid, StoreError> {
    let m = web_message(client, body);
    assert!(store.record_inbound(&m).await?);
    assert!(
        !store.record_inbound(&m).await?,
        "a redelivery stores nothing new"
    );
    Ok(m.id)
}

/// Opens a ticket for `client` with one passed message; returns the ticket id.
async fn waiting_ticket(store: &PgStore, client: &str) -> Result<Uuid, StoreError> {
    let msg = client_message(store, client, "hello").await?;
    let ticket = Uuid::new_v4();
    store.open_ticket(ticket, client, "v1").await?;
    store
        .apply_verdicts(ticket, &[(msg, Verdict::Passed)], "warn", None)
        .await?;
    Ok(ticket)
}

#[sqlx::test]
async fn a_waiting_ticket_is_assigned_only_once_a_manager_is_ready(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    let ticket = waiting_ticket(&store, "c1").await?;
    assert!(store.manager_tickets("m1", &[]).await?.is_empty());
    let r = store.set_ready(&manager("m1"), 2).await?;
    assert_eq!(r.assigned.map(|a| a.ticket_id), Some(ticket));
    assert_eq!((r.open_tickets, r.ready_slots, r.capacity), (1, 0, 2));
    let mine = store.manager_tickets("m1", &[]).await?;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].status, TicketStatus::Assigned);
    Ok(())
}

#[sqlx::test]
async fn a_ready_manager_takes_the_next_ticket_as_soon_as_it_waits(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    assert!(store.set_ready(&manager("m1"), 2).await?.assigned.is_none());
    let msg = client_message(&store, "c1", "hello").await?;
    let ticket = Uuid::new_v4();
    store.open_ticket(ticket, "c1", "v1").await?;
    let applied = store
        .apply_verdicts(ticket, &[(msg, Verdict::Passed)], "warn", None)
        .await?;
    assert_eq!(
        applied.assigned.map(|a| a.manager_id),
        Some("m1".to_owned())
    );
    Ok(())
}

#[sqlx::test]
async fn ready_slots_never_exceed_capacity_and_not_ready_withdraws_them(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    store.set_ready(&manager("m1"), 2).await?;
    store.set_ready(&manager("m1"), 2).await?;
    assert!(matches!(
        store.set_ready(&manager("m1"), 2).await,
        Err(StoreError::AtCapacity { .. })
    ));
    store.set_not_ready("m1").await?;
    waiting_ticket(&store, "c1").await?;
    assert!(
        store.manager_tickets("m1", &[]).await?.is_empty(),
        "a paused manager gets no client"
    );
    Ok(())
}

#[sqlx::test]
async fn a_blocked_message_is_never_shown_to_the_manager(pool: PgPool) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    let ok = client_message(&store, "c1", "hello").await?;
    let bad = client_message(&store, "c1", "card 4111111111111111").await?;
    let ticket = Uuid::new_v4();
    store.open_ticket(ticket, "c1", "v1").await?;
    let applied = store
        .apply_verdicts(
            ticket,
            &[
                (ok, Verdict::Passed),
                (
                    bad,
                    Verdict::Blocked {
                        rule: "card".into(),
                    },
                ),
            ],
            "warned",
            None,
        )
        .await?;
    assert_eq!((applied.passed, applied.blocked), (1, 1));
    // Applying the same verdicts again (an activity retry) changes nothing.
    let again = store
        .apply_verdicts(
            ticket,
            &[(
                bad,
                Verdict::Blocked {
                    rule: "card".into(),
                },
            )],
            "warned",
            None,
        )
        .await?;
    assert_eq!((again.passed, again.blocked), (0, 0));
    store.set_ready(&manager("m1"), 3).await?;
    let seen: Vec<Uuid> = store
        .manager_messages("m1", ticket)
        .await?
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(seen, vec![ok]);
    assert!(matches!(
        store.manager_messages("m2", ticket).await,
        Err(StoreError::TicketNotFound)
    ));
    let kinds: Vec<String> = store
        .client_events_after("c1", 0, 100)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "message_blocked").count(),
        1,
        "{kinds:?}"
    );
    assert!(store.client_events_after("c2", 0, 100).await?.is_empty());
    Ok(())
}

#[sqlx::test]
async fn replies_are_idempotent_and_only_the_assigned_manager_may_reply(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    let ticket = waiting_ticket(&store, "c1").await?;
    store.set_ready(&manager("m1"), 3).await?;
    let a = store.send_reply(&manager("m1"), ticket, "k", "hi").await?;
    assert_eq!(
        store.send_reply(&manager("m1"), ticket, "k", "hi").await?,
        a
    );
    assert!(matches!(
        store.send_reply(&manager("m2"), ticket, "k", "hi").await,
        Err(StoreError::TicketNotFound)
    ));
    assert!(store.close_ticket(ticket, "resolved", "bye", None).await?);
    assert!(!store.close_ticket(ticket, "resolved", "bye", None).await?);
    assert_eq!(
        store.send_reply(&manager("m1"), ticket, "k", "hi").await?,
        a
    );
    assert!(matches!(
        store.send_reply(&manager("m1"), ticket, "k2", "late").await,
        Err(StoreError::TicketClosed)
    ));
    Ok(())
}

#[sqlx::test]
async fn a_reply_sent_several_times_at_once_is_stored_once(pool: PgPool) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool.clone());
    let ticket = waiting_ticket(&store, "c1").await?;
    store.set_ready(&manager("m1"), 3).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.spawn(async move { s.send_reply(&manager("m1"), ticket, "k", "hi").await });
    }
    let mut ids = std::collections::BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        ids.insert(r.expect("task")?);
    }
    assert_eq!(ids.len(), 1, "one message id for one key");
    let (messages, replies): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM messages WHERE author = 'manager'),
                (SELECT count(*) FROM events WHERE kind = 'manager_reply')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!((messages, replies), (1, 1));
    Ok(())
}

#[sqlx::test]
async fn concurrent_readiness_and_arrivals_assign_each_ticket_once_within_capacity(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool.clone());
    let capacity = 2;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let s = store.clone();
        tasks.spawn(async move { waiting_ticket(&s, &format!("c{i}")).await.map(|_| ()) });
    }
    for i in 0..10 {
        for _ in 0..3 {
            let s = store.clone();
            tasks.spawn(async move {
                match s.set_ready(&manager(&format!("m{i}")), capacity).await {
                    Ok(_) | Err(StoreError::AtCapacity { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            });
        }
    }
    while let Some(res) = tasks.join_next().await {
        res.map_err(|e| StoreError::Corrupt {
            column: "task",
            value: e.to_string(),
        })??;
    }
    let over: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT manager_id FROM tickets WHERE status = 'assigned'
         GROUP BY manager_id HAVING count(*) > $1) o",
    )
    .bind(i64::from(capacity))
    .fetch_one(&pool)
    .await?;
    assert_eq!(over, 0, "no manager over capacity");
    let assigned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'assigned'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        assigned, 20,
        "every slot of 10 managers x capacity 2 was used"
    );
    let waiting_while_ready: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM managers WHERE ready_slots > 0 AND EXISTS (SELECT 1 FROM tickets WHERE status = 'waiting')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        waiting_while_ready, 0,
        "no ticket waits while a manager is ready"
    );
    Ok(())
}

#[sqlx::test]
async fn the_backlog_counts_what_waits_for_the_afc_check_a_manager_and_the_relay(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    let empty = store.backlog().await?;
    assert_eq!(empty, tickets::gauges::Backlog::default());

    client_message(&store, "c1", "still pending").await?;
    waiting_ticket(&store, "c2").await?;
    let waiting = store.backlog().await?;
    assert!(waiting.afc_pending_oldest_seconds >= 0.0);
    let counts: Vec<(&str, &str, i64)> = waiting
        .open_tickets
        .iter()
        .map(|q| (q.queue.as_str(), q.status.as_str(), q.count))
        .collect();
    assert_eq!(counts, vec![("general", "waiting", 1)]);
    assert_eq!(waiting.ready_managers, 0);
    assert!(waiting.outbox_unpublished >= 2, "{waiting:?}");
    assert!(waiting.outbox_oldest_unpublished_seconds >= 0.0);

    store.set_ready(&manager("m1"), 2).await?;
    let taken = store.backlog().await?;
    assert_eq!(taken.open_tickets[0].status, "assigned");
    assert_eq!(taken.ready_managers, 0, "its one ready slot was consumed");
    store.set_ready(&manager("m1"), 2).await?;
    assert_eq!(store.backlog().await?.ready_managers, 1);

    let unpublished: Vec<i64> = store
        .unpublished_events(1000)
        .await?
        .iter()
        .map(|e| e.seq)
        .collect();
    store.mark_published(&unpublished).await?;
    let relayed = store.backlog().await?;
    assert_eq!(
        (
            relayed.outbox_unpublished,
            relayed.outbox_oldest_unpublished_seconds
        ),
        (0, 0.0)
    );
    Ok(())
}

/// The migration to prefixed client ids keeps every web client's id and chat: each becomes an
/// identity bound to the first issuer that presents its subject; channel clients are left alone;
/// another issuer's equal subject, and a new subject, get `web:` ids of their own.
#[sqlx::test(migrations = false)]
async fn web_clients_from_before_the_prefixes_keep_their_ids_and_others_get_their_own(
    pool: PgPool,
) -> anyhow::Result<()> {
    let before = sqlx::migrate::Migrator {
        migrations: tickets::store::MIGRATOR
            .migrations
            .iter()
            .filter(|m| m.version < 1400)
            .cloned()
            .collect(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await?;
    for id in ["olga", "tg:42", "email:a@b.test"] {
        sqlx::query("INSERT INTO clients (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await?;
    }
    tickets::store::MIGRATOR.run(&pool).await?;
    let store = PgStore::from_pool(pool.clone());

    assert_eq!(store.web_client("https://idp", "olga").await?, "olga");
    assert_eq!(
        store.web_client("https://idp", "olga").await?,
        "olga",
        "stable"
    );
    // The same subject of another provider is somebody else.
    assert_eq!(store.web_client("https://other", "olga").await?, "web:olga");
    let third = store.web_client("https://third", "olga").await?;
    assert!(
        third.starts_with("web:") && third.ends_with(":olga") && third != "web:olga",
        "{third}"
    );
    // A subject shaped like a channel's client id is a web client.
    assert_eq!(store.web_client("https://idp", "tg:42").await?, "web:tg:42");
    assert_eq!(store.web_client("https://idp", "ivan").await?, "web:ivan");
    Ok(())
}

/// A user holding both roles writes as the web client `web:<their id>`: that ticket is never
/// theirs to serve, and goes to another manager.
#[sqlx::test]
async fn a_manager_is_never_given_the_ticket_they_wrote_as_a_web_client(
    pool: PgPool,
) -> Result<(), StoreError> {
    let store = PgStore::from_pool(pool);
    let as_client = store.web_client("https://idp", "alice").await?;
    assert_eq!(as_client, "web:alice");
    store.set_ready(&manager("alice"), 2).await?;
    let own = waiting_ticket(&store, &as_client).await?;
    assert!(store.manager_tickets("alice", &[]).await?.is_empty());
    store.set_ready(&manager("bob"), 2).await?;
    let bobs: Vec<Uuid> = store
        .manager_tickets("bob", &[])
        .await?
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(bobs, [own]);
    Ok(())
}
