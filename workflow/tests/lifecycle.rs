//! The ticket workflow on a real Temporal server (the stack's dev server, one task queue per test)
//! and a real PostgreSQL (`#[sqlx::test(migrator = "tickets::store::MIGRATOR")]`: one database per test), with the worker in-process.
//! Timers use a test spec with durations of about a second; tests wait on store events with a
//! deadline, never on a sleep.
//!
//! With `INBOX_RECORD_HISTORIES=1` each test writes the histories it produced to
//! `tests/histories/`, which `replay.rs` replays against the current code.

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use temporalio_client::{
    Client, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowGetResultOptions,
    WorkflowHandle,
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tickets::{
    Caller, NewClientMessage, PgStore, Role, message_id_for, store::EVENTS_CHANNEL,
    ticket_id_opened_by,
};
use uuid::Uuid;
use workflow::activities::TicketActivities;
use workflow::client::Tickets;
use workflow::spec::{Spec, TicketSpec};
use workflow::ticket::{TicketOutcome, TicketWorkflow, workflow_id};

const WAIT: Duration = Duration::from_secs(45);

struct Harness {
    store: PgStore,
    tickets: Tickets,
    client: Client,
    pool: PgPool,
}

fn spec(extra: &str) -> anyhow::Result<TicketSpec> {
    let text = format!(
        "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: card\n      detector: card_number\n{extra}"
    );
    Ok(Spec::parse("test.yaml", &text)?.ticket)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

fn manager(id: &str) -> Caller {
    Caller {
        user_id: id.into(),
        roles: vec![Role::Manager],
        display_name: id.into(),
    }
}

impl Harness {
    /// Stores a client message and wakes (or starts) the client's ticket, as the inbound consumer
    /// does; returns the message id and the workflow run id.
    async fn send(
        &self,
        client: &str,
        body: &str,
        spec: &TicketSpec,
        limit: Option<u32>,
    ) -> anyhow::Result<(Uuid, String)> {
        let external_id = format!("{client}/{}", Uuid::new_v4());
        let m = NewClientMessage {
            id: message_id_for("web", &external_id),
            client_id: client.into(),
            client_name: client.into(),
            channel: "web".into(),
            external_id,
            body: body.into(),
        };
        self.store.record_inbound(&m).await?;
        let run = self
            .tickets
            .message_arrived(client, m.id, ticket_id_opened_by(m.id), spec, limit)
            .await?;
        Ok((m.id, run))
    }

    /// Waits until `count` events of `kind` exist for the ticket; returns the last one's payload.
    async fn events(
        &self,
        ticket: Uuid,
        kind: &str,
        count: i64,
    ) -> anyhow::Result<serde_json::Value> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let rows: Vec<serde_json::Value> = sqlx::query_scalar(
                "SELECT payload FROM events WHERE ticket_id = $1 AND kind = $2 ORDER BY seq",
            )
            .bind(ticket)
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
            if rows.len() as i64 >= count {
                return rows.last().cloned().context("no event");
            }
            if tokio::time::timeout_at(deadline, listener.recv())
                .await
                .is_err()
            {
                bail!(
                    "{count} {kind} events for {ticket} did not come within {WAIT:?} (saw {})",
                    rows.len()
                );
            }
        }
    }

    fn run(&self, client: &str, run_id: &str) -> WorkflowHandle<Client, TicketWorkflow> {
        WorkflowHandle::new(
            self.client.clone(),
            WorkflowExecutionInfo::builder()
                .namespace("default")
                .workflow_id(workflow_id(client))
                .run_id(run_id.to_owned())
                .build(),
        )
    }

    async fn record(&self, name: &str, client: &str, run_id: &str) -> anyhow::Result<()> {
        if std::env::var("INBOX_RECORD_HISTORIES").is_err() {
            return Ok(());
        }
        let json = self
            .run(client, run_id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        let dir = platform::workspace_root().join("workflow/tests/histories");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.json")), json)?;
        Ok(())
    }
}

/// Runs `scenario` next to an in-process worker on its own task queue.
async fn with_worker<F, Fut>(pool: PgPool, scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Harness) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let url =
        std::env::var("INBOX_TEMPORAL_URL").unwrap_or_else(|_| "http://127.0.0.1:17240".into());
    let client = workflow::client::connect(
        &platform::settings::temporal::TemporalSettings::plain(url.parse()?, "lifecycle-test"),
        "lifecycle-test",
    )
    .await
    .context("Temporal is not reachable: run the tests with `make test`, which starts it")?;
    let queue = format!("lifecycle-{}", Uuid::new_v4().simple());
    let store = PgStore::from_pool(pool.clone());
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(queue.clone())
        .register_workflow::<TicketWorkflow>()?
        .register_activities(TicketActivities {
            store: store.clone(),
        })
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let stop = worker.shutdown_handle();
    let harness = Harness {
        store,
        tickets: Tickets {
            client: client.clone(),
            task_queue: queue,
        },
        client,
        pool,
    };
    let (worked, outcome) = tokio::join!(worker.run(), async {
        let r = scenario(harness).await;
        stop();
        r
    });
    outcome?;
    worked?;
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn an_unanswered_ticket_escalates_breaches_its_sla_and_auto_closes_after_client_silence(
    pool: PgPool,
) -> anyhow::Result<()> {
    with_worker(pool, |h| async move {
        // Workflow ids are per client and the namespace is shared: every run uses fresh clients.
        let esc = unique("client-esc");
        let spec = spec(
            "timers:\n  escalate_after: 1s\n  first_response_within: 2500ms\n  auto_close_after_client_silence: 1s\non_close:\n  satisfaction_prompt: Rate us from 1 to 5\n",
        )?;
        let (msg, run) = h.send(&esc, "hello, anyone?", &spec, None).await?;
        let ticket = ticket_id_opened_by(msg);

        let escalated = h.events(ticket, "ticket_escalated", 1).await?;
        assert_eq!(escalated["priority"], 2, "normal priority rose to high");
        h.events(ticket, "sla_breached", 1).await?;
        let life = h.store.ticket_lifecycle(ticket).await?;
        assert_eq!(life["status"], "waiting");
        assert!(life["escalations"].as_i64().unwrap_or(0) >= 2, "{life}");

        // A manager takes it and answers; the client stays silent, so the ticket closes itself.
        let r = h.store.set_ready(&manager("m-esc"), 3).await?;
        assert_eq!(r.assigned.as_ref().map(|a| a.ticket_id), Some(ticket));
        h.tickets.assigned(&esc, ticket, "m-esc").await?;
        h.store.send_reply(&manager("m-esc"), ticket, "r1", "How can I help?").await?;
        h.tickets.manager_replied(&esc, ticket, "m-esc").await?;

        let closed = h.events(ticket, "ticket_closed", 1).await?;
        assert_eq!(closed["reason"], "auto_closed: client silent");
        h.events(ticket, "satisfaction_requested", 1).await?;
        let outcome = h.run(&esc, &run).get_result(WorkflowGetResultOptions::default()).await?;
        assert_eq!(outcome, TicketOutcome::AutoClosed { ticket_id: ticket });
        h.record("escalation_and_auto_close", &esc, &run).await
    })
    .await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn editing_the_spec_changes_new_tickets_only(pool: PgPool) -> anyhow::Result<()> {
    with_worker(pool, |h| async move {
        let (ca, cb) = (unique("client-a"), unique("client-b"));
        let old = spec("  \n")?;
        let old = TicketSpec {
            afc_rules: vec![workflow::afc::AfcRule {
                name: "alpha".into(),
                check: workflow::afc::Check::Pattern("alpha".into()),
            }],
            ..old
        };
        let new = TicketSpec {
            afc_rules: vec![workflow::afc::AfcRule {
                name: "beta".into(),
                check: workflow::afc::Check::Pattern("beta".into()),
            }],
            version: "new-version".into(),
            ..old.clone()
        };
        let (first, run) = h.send(&ca, "hello", &old, None).await?;
        let ticket_a = ticket_id_opened_by(first);
        // The consumer now hands out the edited spec; ticket A keeps the one it started with.
        let (alpha_a, _) = h.send(&ca, "alpha here", &new, None).await?;
        let blocked = h.events(ticket_a, "message_blocked", 1).await?;
        assert_eq!(blocked["message_id"], alpha_a.to_string());
        let (first_b, _) = h.send(&cb, "alpha here", &new, None).await?;
        let ticket_b = ticket_id_opened_by(first_b);

        // A manager takes both: B's message passed under the new rules.
        h.store.set_ready(&manager("m1"), 5).await?;
        h.store.set_ready(&manager("m1"), 5).await?;
        h.events(ticket_b, "manager_assigned", 1).await?;
        let seen: Vec<String> = h
            .store
            .manager_messages("m1", ticket_b)
            .await?
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(seen, vec!["alpha here"]);
        assert_eq!(
            h.store.ticket_lifecycle(ticket_a).await?["spec_version"],
            old.version.as_str()
        );
        assert_eq!(
            h.store.ticket_lifecycle(ticket_b).await?["spec_version"],
            "new-version"
        );

        // The normal path to the end: reply, resolve.
        h.tickets.assigned(&ca, ticket_a, "m1").await?;
        h.store
            .send_reply(&manager("m1"), ticket_a, "k", "done")
            .await?;
        h.tickets.manager_replied(&ca, ticket_a, "m1").await?;
        h.tickets.resolve(&ca, ticket_a, "m1").await?;
        let outcome = h
            .run(&ca, &run)
            .get_result(WorkflowGetResultOptions::default())
            .await?;
        assert_eq!(
            outcome,
            TicketOutcome::Resolved {
                ticket_id: ticket_a,
                by: "m1".into()
            }
        );
        h.record("normal_path", &ca, &run).await
    })
    .await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_long_ticket_continues_as_new_without_losing_or_repeating_a_message(
    pool: PgPool,
) -> anyhow::Result<()> {
    with_worker(pool, |h| async move {
        let cl = unique("client-long");
        let spec = spec("")?;
        let limit = Some(40);
        let (first, run) = h.send(&cl, "start", &spec, limit).await?;
        let ticket = ticket_id_opened_by(first);
        h.store.set_ready(&manager("m-long"), 3).await?;
        h.events(ticket, "manager_assigned", 1).await?;
        let n = 30;
        for i in 0..n {
            h.send(&cl, &format!("message {i}"), &spec, limit).await?;
        }
        h.events(ticket, "message_visible", n).await?;
        let bodies: Vec<String> = h.store.manager_messages("m-long", ticket).await?.into_iter().map(|m| m.body).collect();
        assert_eq!(bodies.len(), n as usize + 1, "{bodies:?}");
        for i in 0..n {
            assert_eq!(bodies.iter().filter(|b| **b == format!("message {i}")).count(), 1, "message {i}");
        }
        let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE ticket_id = $1 AND kind = 'message_visible'")
            .bind(ticket)
            .fetch_one(&h.pool)
            .await?;
        assert_eq!(visible, n, "each message was shown exactly once");
        // The first run ended by continuing as new, still the same ticket.
        let events = h.run(&cl, &run).fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await?;
        let last = events.last().context("empty history")?;
        assert_eq!(
            last.event_type,
            temporalio_common::protos::temporal::api::enums::v1::EventType::WorkflowExecutionContinuedAsNew as i32
        );
        h.tickets.resolve(&cl, ticket, "m-long").await?;
        h.events(ticket, "ticket_closed", 1).await?;
        h.record("continue_as_new", &cl, &run).await
    })
    .await
}
