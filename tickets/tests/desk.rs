//! The manager's desk (pages, notes, transfers, event feeds) and the admin reads against a real
//! PostgreSQL; `#[sqlx::test]` gives each test its own migrated database.

use sqlx::PgPool;
use testkit::fixtures::{manager, web_message};
use tickets::{PgStore, StoreError, TicketStatus, Verdict};
use uuid::Uuid;

async fn client_message(store: &PgStore, client: &str, body: &str) -> Result<Uuid, StoreError> {
    let m = web_message(client, body);
    store.record_inbound(&m).await?;
    Ok(m.id)
}

/// A ticket of `client` with one passed message, assigned to `manager` (made ready for it).
async fn assigned_ticket(store: &PgStore, client: &str, manager_id: &str) -> anyhow::Result<Uuid> {
    store.set_ready(&manager(manager_id), 3).await?;
    let msg = client_message(store, client, "hello").await?;
    let ticket = Uuid::new_v4();
    store.open_ticket(ticket, client, "v1").await?;
    let applied = store
        .apply_verdicts(ticket, &[(msg, Verdict::Passed)], "warn", None)
        .await?;
    anyhow::ensure!(
        applied.assigned.map(|a| a.manager_id).as_deref() == Some(manager_id),
        "the ready manager takes the ticket"
    );
    Ok(ticket)
}

#[sqlx::test]
async fn a_note_is_read_by_the_manager_and_never_reaches_the_client(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    let note = store
        .add_note(&manager("m1"), ticket, "k1", "client sounds upset")
        .await?;
    assert_eq!(
        store
            .add_note(&manager("m1"), ticket, "k1", "client sounds upset")
            .await?,
        note,
        "a retry returns the same note"
    );
    let page = store.manager_messages_page("m1", ticket, None, 50).await?;
    assert!(
        page.items
            .iter()
            .any(|m| m.is_note && m.message.body == "client sounds upset")
    );
    let history = store.client_history("c1", None, 100).await?;
    assert!(
        history
            .messages
            .iter()
            .all(|m| m.body != "client sounds upset")
    );
    let client_events = store.client_events_after("c1", 0, 1000).await?;
    assert!(
        client_events
            .iter()
            .all(|e| !e.payload.to_string().contains("upset"))
    );
    let manager_events = store.manager_events_after("m1", 0, 1000).await?;
    assert!(manager_events.iter().any(|e| e.kind == "note_added"));
    Ok(())
}

#[sqlx::test]
async fn a_managers_key_is_scoped_to_the_ticket_and_a_retry_on_the_same_ticket_stores_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let first = assigned_ticket(&store, "c1", "m1").await?;
    let second = assigned_ticket(&store, "c2", "m1").await?;
    let m1 = manager("m1");
    // The same key (a console's `r1`) on two tickets: two replies, two notes.
    let reply_1 = store.send_reply(&m1, first, "r1", "first answer").await?;
    let reply_2 = store.send_reply(&m1, second, "r1", "second answer").await?;
    assert_ne!(reply_1, reply_2, "a key on another ticket is another reply");
    assert_eq!(
        store.send_reply(&m1, first, "r1", "first answer").await?,
        reply_1
    );
    let note_1 = store.add_note(&m1, first, "n1", "first note").await?;
    let note_2 = store.add_note(&m1, second, "n1", "second note").await?;
    assert_ne!(note_1, note_2, "a key on another ticket is another note");
    assert_eq!(
        store.add_note(&m1, second, "n1", "second note").await?,
        note_2
    );
    for (client, body) in [("c1", "first answer"), ("c2", "second answer")] {
        let history = store.client_history(client, None, 100).await?;
        assert_eq!(
            history.messages.iter().filter(|m| m.body == body).count(),
            1,
            "{client} gets their reply once"
        );
    }
    Ok(())
}

/// A reply stored before keys were scoped to the ticket (external id `<manager>/<key>`) is still
/// the one a retry of it returns.
#[sqlx::test]
async fn a_reply_stored_under_the_earlier_key_form_is_found_by_its_retry(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    let reply = store
        .send_reply(&manager("m1"), ticket, "r1", "answer")
        .await?;
    sqlx::query("UPDATE messages SET external_id = 'm1/r1' WHERE id = $1")
        .bind(reply)
        .execute(&pool)
        .await?;
    assert_eq!(
        store
            .send_reply(&manager("m1"), ticket, "r1", "answer")
            .await?,
        reply
    );
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE author = 'manager' AND ticket_id = $1",
    )
    .bind(ticket)
    .fetch_one(&pool)
    .await?;
    assert_eq!(count, 1);
    Ok(())
}

#[sqlx::test]
async fn another_managers_ticket_is_not_found_for_every_desk_action(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    store.set_ready(&manager("m2"), 3).await?;
    assert!(matches!(
        store.manager_messages_page("m2", ticket, None, 50).await,
        Err(StoreError::TicketNotFound)
    ));
    assert!(matches!(
        store.add_note(&manager("m2"), ticket, "k", "x").await,
        Err(StoreError::TicketNotFound)
    ));
    assert!(matches!(
        store.transfer_ticket(&manager("m2"), ticket, "m2").await,
        Err(StoreError::TicketNotFound)
    ));
    assert!(
        store
            .manager_tickets_page("m2", &[], None, 50)
            .await?
            .items
            .is_empty()
    );
    Ok(())
}

#[sqlx::test]
async fn a_transfer_moves_the_ticket_and_the_old_manager_loses_access(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    store
        .add_note(&manager("m1"), ticket, "n", "handover")
        .await?;
    store.set_ready(&manager("m2"), 3).await?;
    let a = store.transfer_ticket(&manager("m1"), ticket, "m2").await?;
    assert_eq!(a.manager_id, "m2");
    assert!(matches!(
        store.manager_ticket("m1", ticket).await,
        Err(StoreError::TicketNotFound)
    ));
    assert_eq!(store.manager_ticket("m2", ticket).await?.id, ticket);
    let page = store.manager_messages_page("m2", ticket, None, 50).await?;
    assert!(
        page.items.iter().any(|m| m.is_note),
        "notes go with the ticket"
    );
    let m2 = store.manager_events_after("m2", 0, 100).await?;
    assert!(m2.iter().any(|e| e.kind == "ticket_assigned"));
    let m1 = store.manager_events_after("m1", 0, 100).await?;
    assert_eq!(
        m1.last().map(|e| e.kind.as_str()),
        Some("ticket_transferred_away")
    );
    let overview = store.managers_overview().await?;
    let load = |id: &str| {
        overview
            .iter()
            .find(|m| m.id == id)
            .map(|m| (m.open_tickets, m.ready_slots))
    };
    assert_eq!(load("m1"), Some((0, 0)));
    assert_eq!(
        load("m2"),
        Some((1, 0)),
        "the transfer used m2's ready slot"
    );
    Ok(())
}

#[sqlx::test]
async fn a_transfer_to_a_manager_who_is_not_ready_is_refused(pool: PgPool) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    assert!(matches!(
        store
            .transfer_ticket(&manager("m1"), ticket, "nobody")
            .await,
        Err(StoreError::ManagerNotReady(_))
    ));
    store.set_ready(&manager("m2"), 3).await?;
    store.set_not_ready("m2").await?;
    assert!(matches!(
        store.transfer_ticket(&manager("m1"), ticket, "m2").await,
        Err(StoreError::ManagerNotReady(_))
    ));
    assert_eq!(store.manager_ticket("m1", ticket).await?.id, ticket);
    Ok(())
}

#[sqlx::test]
async fn pages_cover_every_ticket_once_in_order(pool: PgPool) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let mut expected = Vec::new();
    for i in 0..3 {
        expected.push(assigned_ticket(&store, &format!("c{i}"), "m1").await?);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.manager_tickets_page("m1", &[], after, 2).await?;
        seen.extend(page.items.iter().map(|t| t.id));
        after = page.items.last().map(tickets::desk::ticket_cursor);
        if !page.has_more {
            break;
        }
    }
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");
    let closed = store
        .manager_tickets_page("m1", &[TicketStatus::Closed], None, 10)
        .await?;
    assert!(closed.items.is_empty());
    let all = store.tickets_overview(&[], None, None, 10).await?;
    assert_eq!(all.items.len(), 3);
    let trail = store
        .audit_trail(expected[0])
        .await?
        .ok_or_else(|| anyhow::anyhow!("trail"))?;
    assert!(trail.events.iter().any(|e| e.kind == "manager_assigned"));
    assert_eq!(trail.verdicts.len(), 1);
    assert!(store.audit_trail(Uuid::new_v4()).await?.is_none());
    Ok(())
}

#[sqlx::test]
async fn the_admin_listing_filters_by_queue_status_and_age_together(
    pool: PgPool,
) -> anyhow::Result<()> {
    use tickets::TicketClassification;
    use tickets::admin::TicketFilter;
    let store = PgStore::from_pool(pool);
    let mut ids = Vec::new();
    for (client, queue) in [("c1", "cards"), ("c2", "fraud"), ("c3", "cards")] {
        let msg = client_message(&store, client, "hello").await?;
        let ticket = Uuid::new_v4();
        store.open_ticket(ticket, client, "v1").await?;
        let class = TicketClassification {
            category: queue.into(),
            priority: 2,
            queue: queue.into(),
            fields: serde_json::json!({}),
        };
        store
            .apply_verdicts(ticket, &[(msg, Verdict::Passed)], "warn", Some(&class))
            .await?;
        ids.push(ticket);
    }
    store.close_ticket(ids[2], "resolved", "bye", None).await?;
    let list = |filter: TicketFilter| {
        let store = store.clone();
        async move {
            let page = store.tickets_filtered(&filter, None, 50).await?;
            anyhow::Ok(page.items.iter().map(|t| t.ticket.id).collect::<Vec<_>>())
        }
    };
    let cards = TicketFilter {
        queues: vec!["cards".into()],
        ..Default::default()
    };
    assert_eq!(list(cards.clone()).await?, vec![ids[0], ids[2]]);
    assert_eq!(
        list(TicketFilter {
            statuses: vec![TicketStatus::Waiting],
            ..cards.clone()
        })
        .await?,
        vec![ids[0]]
    );
    assert_eq!(
        list(TicketFilter {
            queues: vec!["cards".into(), "fraud".into()],
            ..Default::default()
        })
        .await?,
        ids
    );
    assert!(
        list(TicketFilter {
            created_before: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
            ..cards
        })
        .await?
        .is_empty()
    );
    let page = store
        .tickets_filtered(&TicketFilter::default(), None, 50)
        .await?;
    let fraud = page.items.iter().find(|t| t.ticket.id == ids[1]);
    assert_eq!(
        fraud.map(|t| (
            t.ticket.queue.as_str(),
            t.ticket.priority,
            t.ticket.category.as_str()
        )),
        Some(("fraud", 2, "fraud"))
    );
    Ok(())
}

/// A conversation read newest page first, then older pages (as a console scrolls up), holds every
/// message once, in order; forwards from the newest page's token comes only what is newer.
#[sqlx::test]
async fn backward_pages_cover_a_conversation_once_newest_page_first(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    for n in 1..=7 {
        store
            .add_note(
                &manager("m1"),
                ticket,
                &format!("k{n}"),
                &format!("note {n}"),
            )
            .await?;
    }
    let newest = store.manager_messages_before("m1", ticket, None, 3).await?;
    let bodies = |p: &tickets::desk::Page<tickets::desk::DeskMessage>| -> Vec<String> {
        p.items.iter().map(|m| m.message.body.clone()).collect()
    };
    assert_eq!(bodies(&newest), ["note 5", "note 6", "note 7"]);
    assert!(newest.has_more);
    let mut all = bodies(&newest);
    let mut before = newest.items.first().map(|m| m.cursor());
    loop {
        let older = store
            .manager_messages_before("m1", ticket, before, 3)
            .await?;
        let mut b = bodies(&older);
        b.extend(all);
        all = b;
        if !older.has_more {
            break;
        }
        before = older.items.first().map(|m| m.cursor());
    }
    let mut expected = vec!["hello".to_owned()];
    expected.extend((1..=7).map(|n| format!("note {n}")));
    assert_eq!(all, expected);
    // Forwards from the newest: nothing newer yet, then the next note.
    let after = newest.items.last().map(|m| m.cursor());
    assert!(
        store
            .manager_messages_page("m1", ticket, after, 10)
            .await?
            .items
            .is_empty()
    );
    store
        .add_note(&manager("m1"), ticket, "k8", "note 8")
        .await?;
    let newer = store.manager_messages_page("m1", ticket, after, 10).await?;
    assert_eq!(bodies(&newer), ["note 8"]);
    // Not their ticket: not found either way.
    assert!(matches!(
        store.manager_messages_before("m2", ticket, None, 3).await,
        Err(StoreError::TicketNotFound)
    ));
    Ok(())
}

/// Search finds, in Russian and English, only what the searcher may read: a manager their own
/// tickets' passed messages and replies, a supervisor everyone's; blocked and pending text never.
#[sqlx::test]
async fn search_finds_only_what_the_searcher_may_read_and_never_blocked_text(
    pool: PgPool,
) -> anyhow::Result<()> {
    use tickets::search::SearchScope;
    let store = PgStore::from_pool(pool);
    let ticket = assigned_ticket(&store, "c1", "m1").await?;
    let passed = client_message(&store, "c1", "Мой перевод застрял в пути").await?;
    let blocked = client_message(&store, "c1", "secret transfer code 123456").await?;
    client_message(&store, "c1", "pending transfer question").await?;
    store
        .apply_verdicts(
            ticket,
            &[
                (passed, Verdict::Passed),
                (blocked, Verdict::Blocked { rule: "otp".into() }),
            ],
            "warned",
            None,
        )
        .await?;
    store
        .send_reply(
            &manager("m1"),
            ticket,
            "r1",
            "The transfers are checked daily",
        )
        .await?;
    let found = |scope, q: &'static str| {
        let store = store.clone();
        async move {
            anyhow::Ok(
                store
                    .search_messages(scope, q, 20)
                    .await?
                    .into_iter()
                    .map(|h| h.body)
                    .collect::<Vec<_>>(),
            )
        }
    };
    // Russian morphology: "переводы" finds "перевод".
    assert_eq!(
        found(SearchScope::Manager("m1"), "переводы").await?,
        ["Мой перевод застрял в пути"]
    );
    // English stemming: "transfer" finds "transfers"; the blocked and the pending one stay out.
    assert_eq!(
        found(SearchScope::Manager("m1"), "transfer").await?,
        ["The transfers are checked daily"]
    );
    assert!(
        found(SearchScope::Manager("m1"), "secret")
            .await?
            .is_empty()
    );
    assert!(
        found(SearchScope::Manager("m1"), "pending")
            .await?
            .is_empty()
    );
    // Another manager finds nothing of it; a supervisor finds it all (but never blocked text).
    assert!(
        found(SearchScope::Manager("m2"), "transfer")
            .await?
            .is_empty()
    );
    assert_eq!(
        found(SearchScope::Supervisor, "перевод OR transfer")
            .await?
            .len(),
        2
    );
    assert!(found(SearchScope::Supervisor, "secret").await?.is_empty());
    let hit = store
        .search_messages(SearchScope::Manager("m1"), "застрял", 5)
        .await?;
    assert!(hit[0].snippet.contains("[застрял]"), "{:?}", hit[0].snippet);
    assert_eq!(
        (hit[0].ticket_id, hit[0].client_id.as_str()),
        (ticket, "c1")
    );
    Ok(())
}
