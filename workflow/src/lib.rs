//! The workflow service: the Temporal worker that runs one ticket workflow per client conversation
//! (AFC check, queueing for a manager, closing), the inbound Kafka consumer that stores client
//! messages and wakes their tickets, the outbox relay that publishes ticket events, and the
//! `workflows.yaml` loader. Workflow code is deterministic; every side effect is an activity.

pub mod activities;
pub mod afc;
pub mod calendar;
pub mod client;
pub mod inbound;
pub mod relay;
pub mod spec;
pub mod ticket;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use platform::settings::{self, Common};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tickets::PgStore;
use tokio_util::sync::CancellationToken;

/// Settings of the workflow service (`INBOX_*` environment variables).
#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub temporal_url: String,
    pub namespace: String,
    pub task_queue: String,
    pub spec_path: PathBuf,
    /// Ticket workflows continue as new past this many history events.
    pub history_limit: Option<u32>,
}

impl Settings {
    pub fn from_env() -> Self {
        Self {
            common: Common::from_env(),
            temporal_url: settings::var("INBOX_TEMPORAL_URL", "http://127.0.0.1:17240"),
            namespace: settings::var("INBOX_TEMPORAL_NAMESPACE", "default"),
            task_queue: settings::var("INBOX_TASK_QUEUE", "tickets"),
            spec_path: settings::var("INBOX_SPEC", "workflows.yaml").into(),
            history_limit: std::env::var("INBOX_HISTORY_LIMIT")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// Runs the service until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let spec = spec::Spec::load(&settings.spec_path)?;
    let store = PgStore::connect(&settings.common.database_url)
        .await
        .context("connecting to PostgreSQL")?;
    store.migrate().await?;
    let topics = settings.common.topics();
    let brokers = &settings.common.kafka_brokers;
    platform::kafka::ensure_topics(brokers, &topics.all()).await?;
    let client = client::connect(
        &settings.temporal_url,
        &settings.namespace,
        "inbox-workflow",
    )
    .await?;
    let tickets = client::Tickets {
        client: client.clone(),
        task_queue: settings.task_queue.clone(),
    };

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<ticket::TicketWorkflow>()?
        .register_activities(activities::TicketActivities {
            store: store.clone(),
        })
        .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop_worker = worker.shutdown_handle();

    let inbound = inbound::Inbound {
        consumer: inbound::consumer(
            brokers,
            &format!("{}workflow-inbound", settings.common.topic_prefix),
            &topics.inbound_messages,
        )?,
        store: store.clone(),
        tickets: tickets.clone(),
        spec: spec.ticket.clone(),
        history_limit: settings.history_limit,
    };
    let relay = relay::Relay {
        store,
        tickets,
        producer: platform::kafka::producer_config(brokers).create()?,
        topic: topics.ticket_events.clone(),
    };
    let inbound_task = tokio::spawn(inbound.run(shutdown.clone()));
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    tracing::info!(task_queue = %settings.task_queue, "workflow service ready");

    // The worker is not Send: it runs on this task, next to the watcher that stops it.
    let (worker_res, ()) = tokio::join!(worker.run(), async {
        shutdown.cancelled().await;
        stop_worker();
    });
    let _ = tokio::join!(inbound_task, relay_task);
    worker_res?;
    Ok(())
}
