//! The ticket workflow on a real Temporal server (the stack's dev server, one task queue per test)
//! and a real PostgreSQL (`#[sqlx::test(migrator = "tickets::store::MIGRATOR")]`: one database per test), with the worker in-process.
//! Timers use a test spec with durations of about a second; tests wait on store events with a
//! deadline, never on a sleep.
//!
//! With `INBOX_RECORD_HISTORIES=1` each test writes the histories it produced to
//! `tests/histories/`, which `replay.rs` replays against the current code.

use std::time::Duration;

use anyhow::{Context, bail};
use spec::checker::CheckedSpec;
use spec::{Spec, TicketSpec};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use temporalio_client::{
    Client, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowGetResultOptions,
    WorkflowHandle, WorkflowQueryOptions,
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use testkit::fixtures::{manager, web_message};
use tickets::{PgStore, store::EVENTS_CHANNEL, ticket_id_opened_by};
use uuid::Uuid;
use workflow::activities::TicketActivities;
use workflow::client::Tickets;
use workflow::relay::WorkflowSignals;
use workflow::ticket::{Lifecycle, TicketOutcome, TicketWorkflow, workflow_id};

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
        let m = web_message(client, body);
        self.store.record_inbound(&m).await?;
        let run = self
            .tickets
            .message_arrived(client, m.id, ticket_id_opened_by(m.id), spec, limit)
            .await?;
        Ok((m.id, run))
    }

    /// Stores a client message as the inbound consumer does: stored, checked and attached to
    /// the client's ticket (opened if none) in one transaction; then what the outbox relay does.
    async fn intake(
        &self,
        client: &str,
        body: &str,
        spec: &TicketSpec,
    ) -> anyhow::Result<(Uuid, tickets::inbound::Intake)> {
        let m = web_message(client, body);
        let check = CheckedSpec::compile(spec)?;
        let intake = self
            .store
            .intake_batch(std::slice::from_ref(&m), &[], Some(&check))
            .await?;
        self.relay(spec).await?;
        Ok((m.id, intake))
    }

    /// The outbox relay's part for the workflows: committed lifecycle events become signals.
    async fn relay(&self, spec: &TicketSpec) -> anyhow::Result<()> {
        let events = self.store.unpublished_events(500).await?;
        WorkflowSignals {
            store: self.store.clone(),
            tickets: self.tickets.clone(),
            spec: spec.clone(),
            history_limit: None,
        }
        .send(&events)
        .await?;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        self.store.mark_published(&seqs).await?;
        Ok(())
    }

    /// The client's current workflow run (the latest of its chain).
    fn latest(&self, client: &str) -> WorkflowHandle<Client, TicketWorkflow> {
        self.client
            .get_workflow_handle::<TicketWorkflow>(workflow_id(client))
    }

    /// Polls the running ticket's lifecycle (a query) until `pred` holds.
    async fn lifecycle_until(
        &self,
        client: &str,
        what: &str,
        pred: impl Fn(&Lifecycle) -> bool,
    ) -> anyhow::Result<Lifecycle> {
        let mut poll = testkit::Poll::new(WAIT, Duration::from_millis(50));
        let mut last = None;
        while poll.next().await {
            let life = self
                .latest(client)
                .query(
                    TicketWorkflow::lifecycle,
                    (),
                    WorkflowQueryOptions::default(),
                )
                .await?;
            if pred(&life) {
                return Ok(life);
            }
            last = Some(life);
        }
        bail!("{what} did not happen within {WAIT:?}: {last:?}")
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
            compiled: Default::default(),
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
            afc_rules: vec![tickets::screening::AfcRule {
                name: "alpha".into(),
                check: tickets::screening::Check::Pattern("alpha".into()),
            }],
            ..old
        };
        let new = TicketSpec {
            afc_rules: vec![tickets::screening::AfcRule {
                name: "beta".into(),
                check: tickets::screening::Check::Pattern("beta".into()),
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

/// Counts of one kind of history event (`TimerStartedEventAttributes` …) in a run's history.
async fn history_counts(
    h: &Harness,
    client: &str,
    run_id: &str,
    kinds: &[&str],
) -> anyhow::Result<Vec<usize>> {
    let json = h
        .run(client, run_id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await?;
    let json = String::from_utf8_lossy(&json);
    Ok(kinds.iter().map(|k| json.matches(k).count()).collect())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_store_checked_ticket_hears_only_its_lifecycle_and_asks_the_store_before_closing_on_silence(
    pool: PgPool,
) -> anyhow::Result<()> {
    with_worker(pool, |h| async move {
        let c = unique("client-store");
        let spec = spec(
            "timers:\n  escalate_after: 1s\n  first_response_within: 2500ms\n  auto_close_after_client_silence: 2s\n",
        )?;
        // The inbound transaction opens, checks and queues the ticket: no message signal.
        let (first, intake) = h.intake(&c, "hello, anyone?", &spec).await?;
        let ticket = ticket_id_opened_by(first);
        assert_eq!(intake.opened, vec![ticket]);
        assert!(intake.wake.is_empty(), "{intake:?}");
        assert_eq!(intake.passed, 1);
        let (blocked, intake) = h.intake(&c, "card 4111 1111 1111 1111", &spec).await?;
        assert_eq!((intake.opened.len(), intake.blocked), (0, 1));
        let warning = h.events(ticket, "message_blocked", 1).await?;
        assert_eq!(warning["message_id"], blocked.to_string());

        // The timers run on the store's word alone.
        let escalated = h.events(ticket, "ticket_escalated", 1).await?;
        assert_eq!(escalated["priority"], 2, "normal priority rose to high");
        h.events(ticket, "sla_breached", 1).await?;

        // A manager takes it and answers; the client writes again (which no workflow hears).
        h.store.set_ready(&manager("m-store"), 3).await?;
        h.relay(&spec).await?;
        h.store.send_reply(&manager("m-store"), ticket, "r1", "How can I help?").await?;
        h.relay(&spec).await?;
        let replied = h.lifecycle_until(&c, "the reply", |l| l.silent_since_ms.is_some()).await?;
        assert!(replied.responded, "the first reply meets the SLA");
        h.intake(&c, "one more thing", &spec).await?;
        // When the silence timer fires it asks the store, finds the client wrote, stays open
        // and asks again a period later.
        h.lifecycle_until(&c, "the silence check", |l| l.silent_since_ms > replied.silent_since_ms)
            .await?;
        assert_eq!(h.store.ticket_lifecycle(ticket).await?["status"], "assigned");

        // The next reply wakes no workflow (only the first does); the next check finds it in the
        // store and counts the silence from it: unanswered, the ticket closes itself.
        let r2 = h.store.send_reply(&manager("m-store"), ticket, "r2", "Anything else?").await?;
        h.relay(&spec).await?;
        let closed = h.events(ticket, "ticket_closed", 1).await?;
        assert_eq!(closed["reason"], "auto_closed: client silent");
        let silent_for: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM c.created_at - r.created_at)::float8
             FROM messages r, messages c WHERE r.id = $1 AND c.id = $2",
        )
        .bind(r2)
        .bind(Uuid::parse_str(closed["message_id"].as_str().context("closing message")?)?)
        .fetch_one(&h.pool)
        .await?;
        assert!(silent_for >= 2.0, "closed {silent_for}s after the last reply, not 2s");
        let seen: Vec<String> = h
            .store
            .manager_messages("m-store", ticket)
            .await?
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert!(seen.contains(&"one more thing".to_owned()), "{seen:?}");
        assert!(!seen.iter().any(|b| b.contains("4111")), "a blocked message is never shown: {seen:?}");

        let run = h
            .latest(&c)
            .describe(Default::default())
            .await?
            .raw_description
            .workflow_execution_info
            .and_then(|i| i.execution)
            .map(|e| e.run_id)
            .context("the ticket's run")?;
        let outcome = h.run(&c, &run).get_result(WorkflowGetResultOptions::default()).await?;
        assert_eq!(outcome, TicketOutcome::AutoClosed { ticket_id: ticket });
        // Three client messages, two replies, three lifecycle signals (opened+queued, assigned,
        // the first reply): the messages and the second reply signalled nothing.
        let [signals, started, fired, cancelled] = history_counts(
            &h,
            &c,
            &run,
            &[
                "WorkflowExecutionSignaledEventAttributes",
                "TimerStartedEventAttributes",
                "TimerFiredEventAttributes",
                "TimerCanceledEventAttributes",
            ],
        )
        .await?[..] else {
            bail!("four counts");
        };
        assert_eq!(signals, 3, "signals in the history");
        // One timer per deadline: every timer started either fired or was cancelled when a
        // signal moved its deadline; none is left to fire stale.
        assert_eq!(started, fired + cancelled, "{started} started, {fired} fired, {cancelled} cancelled");
        h.record("store_checked_silence_from_store", &c, &run).await
    })
    .await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_ticket_started_on_the_earlier_path_finishes_on_it_and_the_next_one_takes_the_store_path(
    pool: PgPool,
) -> anyhow::Result<()> {
    with_worker(pool, |h| async move {
        let c = unique("client-upgrade");
        let spec = spec("  \n")?;
        let alice = manager("m-upgrade");
        // Before the upgrade: the consumer stored the message and the workflow checked it.
        h.store.set_ready(&alice, 5).await?;
        let (first, run) = h.send(&c, "hello", &spec, None).await?;
        let old = ticket_id_opened_by(first);
        h.events(old, "manager_assigned", 1).await?;
        h.relay(&spec).await?;

        // After it: the consumer finds the ticket is its workflow's and leaves the message to it.
        let (second, intake) = h.intake(&c, "second", &spec).await?;
        assert_eq!(intake.wake, vec![c.clone()]);
        assert!(intake.opened.is_empty());
        h.tickets
            .message_arrived(&c, second, ticket_id_opened_by(second), &spec, None)
            .await?;
        let visible = h.events(old, "message_visible", 1).await?;
        assert_eq!(visible["message_id"], second.to_string());
        h.tickets.resolve(&c, old, "m-upgrade").await?;
        h.events(old, "ticket_closed", 1).await?;
        let outcome = h
            .run(&c, &run)
            .get_result(WorkflowGetResultOptions::default())
            .await?;
        assert_eq!(
            outcome,
            TicketOutcome::Resolved {
                ticket_id: old,
                by: "m-upgrade".into()
            }
        );

        // The client's next message opens a ticket the store checks.
        h.store.set_ready(&alice, 5).await?;
        let (third, intake) = h.intake(&c, "third", &spec).await?;
        let new = ticket_id_opened_by(third);
        assert_eq!(intake.opened, vec![new]);
        assert!(intake.wake.is_empty());
        h.events(new, "manager_assigned", 1).await?;
        h.relay(&spec).await?;
        h.lifecycle_until(&c, "the assignment", |l| {
            l.manager.as_deref() == Some("m-upgrade")
        })
        .await?;
        let seen = |t| {
            let store = h.store.clone();
            async move {
                anyhow::Ok(
                    store
                        .manager_messages("m-upgrade", t)
                        .await?
                        .into_iter()
                        .filter(|m| m.author == tickets::Author::Client)
                        .map(|m| m.body)
                        .collect::<Vec<_>>(),
                )
            }
        };
        assert_eq!(seen(old).await?, vec!["hello", "second"]);
        assert_eq!(seen(new).await?, vec!["third"]);
        h.tickets.resolve(&c, new, "m-upgrade").await?;
        h.events(new, "ticket_closed", 1).await?;
        let outcome = h
            .latest(&c)
            .get_result(WorkflowGetResultOptions::default())
            .await?;
        assert_eq!(
            outcome,
            TicketOutcome::Resolved {
                ticket_id: new,
                by: "m-upgrade".into()
            }
        );
        Ok(())
    })
    .await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_dry_run_with_the_spec_a_ticket_ran_under_agrees_with_what_the_workflow_did(
    pool: PgPool,
) -> anyhow::Result<()> {
    use spec::simulate::{DifferenceKind, dry_run_recorded};
    use tickets::simulation::SimulationPeriod;
    with_worker(pool, |h| async move {
        let c = unique("client-dry-run");
        // Rounds at 2s and 4s, the breach at 2.5s: the manager comes between the breach and the
        // second round, so the workflow and the replay part well clear of any race.
        let ran = spec(
            "timers:\n  escalate_after: 2s\n  first_response_within: 2500ms\n  auto_close_after_client_silence: 2s\n",
        )?;
        let (first, _) = h.intake(&c, "hello, anyone?", &ran).await?;
        let ticket = ticket_id_opened_by(first);
        h.events(ticket, "ticket_escalated", 1).await?;
        h.events(ticket, "sla_breached", 1).await?;
        h.store.set_ready(&manager("m-dry"), 3).await?;
        h.relay(&ran).await?;
        h.store.send_reply(&manager("m-dry"), ticket, "r1", "How can I help?").await?;
        h.relay(&ran).await?;
        let closed = h.events(ticket, "ticket_closed", 1).await?;
        assert_eq!(closed["reason"], "auto_closed: client silent");

        let now = chrono::Utc::now();
        let period = SimulationPeriod::new(now - chrono::Duration::hours(1), now)?;
        let same = dry_run_recorded(&h.store, &ran, &period, 100, 5).await?;
        assert_eq!((same.scanned, same.simulated), (1, 1));
        assert!(
            same.differences.iter().all(|d| d.tickets == 0),
            "{:?}",
            same.differences
        );
        assert_eq!(same.before, same.after);
        assert_eq!(
            (same.before.escalations, same.before.sla_breaches, same.before.auto_closes),
            (1, 1, 1)
        );

        // Slower timers: no round, no breach, the same close.
        let slower = spec(
            "timers:\n  escalate_after: 10s\n  first_response_within: 20s\n  auto_close_after_client_silence: 2s\n",
        )?;
        let run = dry_run_recorded(&h.store, &slower, &period, 100, 5).await?;
        let count = |k: DifferenceKind| run.difference(k).map_or(0, |d| d.tickets);
        assert_eq!(
            (
                count(DifferenceKind::EscalationsAvoided),
                count(DifferenceKind::SlaBreachAvoided),
                count(DifferenceKind::PriorityChanged),
                count(DifferenceKind::AutoCloseAvoided),
            ),
            (1, 1, 1, 0),
            "{:?}",
            run.differences
        );
        Ok(())
    })
    .await
}
