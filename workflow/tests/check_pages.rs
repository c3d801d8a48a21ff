//! The workflow's AFC check of a client's pending messages (tickets opened before the inbound
//! transaction checked messages itself) takes the whole backlog, page by page: a client with more
//! pending messages than a page holds has every one of them checked in one activity run.

use spec::Spec;
use testkit::fixtures::web_message;
use tickets::PgStore;
use tickets::messages::PENDING_PAGE;
use uuid::Uuid;
use workflow::activities::{CheckInput, TicketActivities};

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_backlog_larger_than_a_page_is_checked_whole(pool: sqlx::PgPool) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let spec = Spec::parse(
        "test.yaml",
        "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: card\n      detector: card_number\n",
    )?
    .ticket;
    let client = format!("backlog-{}", Uuid::new_v4().simple());
    let n = usize::try_from(PENDING_PAGE)? + 37;
    let msgs: Vec<_> = (0..n)
        .map(|i| {
            let body = if i % 100 == 7 {
                "card 4111 1111 1111 1111".to_owned()
            } else {
                format!("question {i}")
            };
            web_message(&client, &body)
        })
        .collect();
    for chunk in msgs.chunks(tickets::inbound::MAX_INBOUND_BATCH) {
        store.record_inbound_batch(chunk).await?;
    }
    let activities = TicketActivities {
        store: store.clone(),
        compiled: spec::checker::Compiled::default(),
    };
    let outcome = activities
        .check_all_pending(CheckInput {
            ticket_id: Uuid::new_v4(),
            client_id: client.clone(),
            spec,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let blocked = msgs.iter().filter(|m| m.body.contains("4111")).count();
    assert_eq!(outcome.checked, n);
    assert_eq!((outcome.passed, outcome.blocked), (n - blocked, blocked));
    assert!(outcome.queued);
    assert!(store.pending_client_messages(&client).await?.is_empty());
    Ok(())
}
