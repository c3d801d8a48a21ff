//! The workflow service: the Temporal worker that runs one ticket workflow per client conversation
//! (AFC check, queueing for a manager, closing), the inbound Kafka consumer that stores client
//! messages and wakes their tickets, the outbox relay that publishes ticket events, the AFC verdict
//! consumer (Kafka provider) and the `workflows.yaml` loader. Workflow code is deterministic; every
//! side effect is an activity. The `afc-emulator` binary plays the bank's AFC system.

pub mod activities;
pub mod afc;
pub mod afc_activities;
pub mod afc_emulator;
pub mod afc_kafka;
pub mod calendar;
pub mod client;
pub mod inbound;
pub mod relay;
pub mod source;
pub mod spec;
pub mod ticket;
pub mod verdicts;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use platform::settings::{self, Common};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tickets::PgStore;
use tokio_util::sync::CancellationToken;

/// Default of [`Settings::workflow_cache`]. A cached ticket workflow costs the worker ~74 KB
/// (measured with 2,000 cached: 184 MB PSS against 36 MB idle), so 3,000 keeps the worker near
/// 260 MB however many tickets are open (the 300 MB budget at 10,000 open tickets); tickets beyond
/// it replay their (short) history at their next task. Raise it where memory allows.
pub const DEFAULT_WORKFLOW_CACHE: usize = 3_000;

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
    /// AES-256-GCM key (hex) for messages to the AFC system (`INBOX_AFC_KEY`); unset = clear.
    pub afc_key: Option<String>,
    /// The AFC system's verdict-signing public key: a PEM or a path to one
    /// (`INBOX_AFC_PUBLIC_KEY`). Needed by the Kafka provider; without it no verdict is trusted.
    pub afc_public_key: Option<String>,
    /// Ticket workflows the worker keeps in memory (`INBOX_WORKFLOW_CACHE`). A workflow not
    /// cached is rebuilt by replaying its whole history at its next task, so this should cover the
    /// open tickets: with the SDK's default (1,000) and more open tickets than that, messages spread
    /// over them evicted a workflow at nearly every task.
    pub workflow_cache: usize,
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
            afc_key: std::env::var("INBOX_AFC_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
            afc_public_key: std::env::var("INBOX_AFC_PUBLIC_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
            workflow_cache: std::env::var("INBOX_WORKFLOW_CACHE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_WORKFLOW_CACHE),
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
    let afc_topics = afc_kafka::AfcTopics::from_env(&settings.common.topic_prefix);
    platform::kafka::ensure_topics(brokers, &afc_topics.all()).await?;
    let kafka_afc = !spec.ticket.afc_provider.is_builtin();
    let cipher = afc_kafka::Cipher::from_hex(settings.afc_key.as_deref())?;
    if kafka_afc && cipher.is_clear() {
        tracing::warn!(
            "INBOX_AFC_KEY is not set: messages to the AFC system go in clear JSON (dev only)"
        );
    }
    // Fail-closed: without the AFC system's key no verdict could be trusted, so a spec that
    // needs verdicts does not start.
    let verdict_key = match &settings.afc_public_key {
        Some(k) => Some(afc_kafka::VerdictKey::from_setting(k)?),
        None if kafka_afc => anyhow::bail!(
            "the spec's AFC provider is kafka but INBOX_AFC_PUBLIC_KEY (PEM or path) is not set"
        ),
        None => None,
    };
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
        .register_activities(afc_activities::AfcActivities {
            store: store.clone(),
            publisher: afc_activities::AfcPublisher {
                producer: platform::kafka::producer_config(brokers).create()?,
                topic: afc_topics.msgs.clone(),
                cipher,
            },
        })
        .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
        .max_cached_workflows(settings.workflow_cache)
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop_worker = worker.shutdown_handle();

    let inbound = inbound::Inbound {
        brokers: brokers.clone(),
        topic: topics.inbound_messages.clone(),
        store: store.clone(),
        tickets: tickets.clone(),
        spec: spec.ticket.clone(),
        history_limit: settings.history_limit,
    };
    // Verdicts are consumed whenever the key is known, even under a builtin spec: tickets that
    // started with the Kafka provider keep it for life.
    let verdict_task = match verdict_key {
        Some(key) => {
            let consumer = verdicts::VerdictConsumer {
                brokers: brokers.clone(),
                topic: afc_topics.verdicts.clone(),
                store: store.clone(),
                tickets: tickets.clone(),
                key,
                producer: platform::kafka::producer_config(brokers).create()?,
                dlq_topic: afc_topics.dlq.clone(),
                spec: spec.ticket.clone(),
                history_limit: settings.history_limit,
            };
            Some(tokio::spawn(consumer.run(shutdown.clone())))
        }
        None => None,
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
    if let Some(t) = verdict_task {
        let _ = t.await;
    }
    worker_res?;
    Ok(())
}
