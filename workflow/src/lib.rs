//! The workflow service: the inbound Kafka consumer whose transaction stores, AFC-checks and
//! attaches client messages to their tickets, the Temporal worker that runs one ticket workflow per
//! client conversation (its lifecycle: queueing, escalation, SLA, silence, closing), the outbox
//! relay that publishes ticket events and signals lifecycle changes, the external AFC provider's
//! relay and verdict consumer (Kafka), the bot commands' relay and answer consumer (Kafka). The spec they run (`workflows.yaml`) is the `spec` crate's.
//! Workflow code is deterministic; every side effect is an activity. The `afc-emulator` binary
//! plays the bank's AFC system; `bot-worker` is an example of the bank's bot worker.

pub mod activities;
pub mod afc_activities;
pub mod afc_emulator;
pub mod afc_kafka;
pub mod afc_relay;
pub mod bot_worker;
pub mod bots;
pub mod client;
pub mod gauges;
pub mod inbound;
pub mod lifecycle;
pub mod relay;
pub mod settings;
pub mod simulate;
pub mod source;
pub mod ticket;
pub mod verdicts;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use platform::settings::ExposeSecret;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

/// Applies the database migrations of this build (`workflow migrate`, the Kubernetes migration
/// Job) and returns the schema version it leaves: the newest migration's.
pub async fn migrate(settings: &Settings) -> anyhow::Result<i64> {
    let db = &settings.common.database;
    // `open` applies the migrations (under PostgreSQL's advisory lock).
    tickets::PgStore::open("migrate", &db.url, db.password(), 1)
        .await
        .context("migrating PostgreSQL")?;
    Ok(tickets::store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or_default())
}

/// Seals the original of a blocked message with INBOX_DATA_KEY for the bank's audit.
struct AuditKey(platform::seal::SealKey);

impl tickets::screening::AuditSeal for AuditKey {
    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.seal(plain))
    }
}

/// Runs the service until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let spec = spec::Spec::load(&settings.spec_path)?;
    let db = &settings.common.database;
    let mut store = tickets::PgStore::open("workflow", &db.url, db.password(), db.max_connections)
        .await
        .context("connecting to PostgreSQL")?;
    if let Some(key) = &settings.common.data_key {
        store = store.with_audit_seal(Arc::new(AuditKey(key.clone())));
    }
    let topics = settings.common.topics();
    let brokers = &settings.common.kafka;
    platform::kafka::ensure_topics(brokers, &topics.all()).await?;
    let afc_topics = settings.afc_topics.clone();
    platform::kafka::ensure_topics(brokers, &afc_topics.all()).await?;
    let bot_topics = settings.bot_topics.clone();
    platform::kafka::ensure_topics(brokers, &bot_topics.all()).await?;
    let kafka_afc = !spec.ticket.afc_provider.is_builtin();
    let cipher =
        afc_kafka::Cipher::from_hex(settings.afc_key.as_ref().map(ExposeSecret::expose_secret))?;
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
    let client = client::connect(&settings.temporal, "inbox-workflow").await?;
    let health = platform::ops::Health::of_database_and_kafka(
        platform::ops::probe_of(&store, tickets::PgStore::ping_owned),
        brokers,
        &topics.inbound_messages,
    )?;
    health.probe("temporal", client::probe(&client));
    platform::ops::serve(&settings.ops_addr, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding the ops listener {}", settings.ops_addr))?;
    let task_queue = settings.temporal.task_queue.clone();
    let tickets = client::Tickets {
        client: client.clone(),
        task_queue: task_queue.clone(),
    };

    // The inbound transaction runs the builtin AFC rules, or holds the messages for the external
    // AFC system (the AFC relay hands them over, the verdict consumer applies its verdicts).
    let compiled = spec::checker::Compiled::default();
    let check = compiled.of(&spec.ticket)?;
    let afc_publisher = afc_activities::AfcPublisher {
        producer: platform::kafka::producer_config(brokers).create()?,
        topic: afc_topics.msgs.clone(),
        cipher,
    };

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(task_queue.clone())
        .register_workflow::<ticket::TicketWorkflow>()?
        .register_activities(activities::TicketActivities {
            store: store.clone(),
            compiled: compiled.clone(),
        })
        .register_activities(afc_activities::AfcActivities {
            store: store.clone(),
            publisher: afc_publisher.clone(),
        })
        .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
        .max_cached_workflows(settings.workflow_cache)
        .build();
    let mut worker = Worker::new(&runtime, client, options)?;
    let stop_worker = worker.shutdown_handle();

    let inbound_check = Arc::new(spec::checker::InboundCheck {
        spec: check.clone(),
        bots: spec.bots.clone(),
    });
    // Commands queued under any spec are published, answered and timed out, whatever the
    // current spec's `bots` says.
    let bot_relay = bots::BotRelay {
        store: store.clone(),
        producer: platform::kafka::producer_config(brokers).create()?,
        topic: bot_topics.commands.clone(),
        check: inbound_check.clone(),
    };
    let bot_replies = bots::BotReplies {
        kafka: brokers.clone(),
        fetch: settings.fetch,
        topic: bot_topics.replies.clone(),
        store: store.clone(),
        dead_letters: platform::kafka::DeadLetters::new(brokers, bot_topics.dlq.clone())?,
        check: inbound_check.clone(),
    };
    let stop = shutdown.clone();
    let bot_relay_task =
        platform::ops::supervise(&health, "bot-commands", shutdown.clone(), move || {
            bot_relay.clone().run(stop.clone())
        });
    let stop = shutdown.clone();
    let bot_replies_task =
        platform::ops::supervise(&health, "bot-replies", shutdown.clone(), move || {
            bot_replies.clone().run(stop.clone())
        });
    let inbound = inbound::Inbound {
        kafka: brokers.clone(),
        fetch: settings.fetch,
        dead_letters: platform::kafka::DeadLetters::new(
            brokers,
            topics.inbound_dead_letters.clone(),
        )?,
        topic: topics.inbound_messages.clone(),
        store: store.clone(),
        tickets: tickets.clone(),
        spec: spec.ticket.clone(),
        check: Some(inbound_check.clone()),
        history_limit: settings.history_limit,
        data_key: settings.common.data_key.clone(),
    };
    // Verdicts are consumed (and the AFC outbox handed over) whenever the key is known, even
    // under a builtin spec: tickets that started with the Kafka provider keep it for life.
    let verdict_task = match verdict_key {
        Some(key) => {
            let afc_relay = afc_relay::AfcRelay {
                store: store.clone(),
                publisher: afc_publisher,
            };
            let stop = shutdown.clone();
            let afc_relay_task =
                platform::ops::supervise(&health, "afc-outbox", shutdown.clone(), move || {
                    afc_relay.clone().run(stop.clone())
                });
            let consumer = verdicts::VerdictConsumer {
                kafka: brokers.clone(),
                fetch: settings.fetch,
                topic: afc_topics.verdicts.clone(),
                store: store.clone(),
                tickets: tickets.clone(),
                key,
                producer: platform::kafka::producer_config(brokers).create()?,
                dlq_topic: afc_topics.dlq.clone(),
                check,
                history_limit: settings.history_limit,
            };
            let stop = shutdown.clone();
            let verdicts_task =
                platform::ops::supervise(&health, "afc-verdicts", shutdown.clone(), move || {
                    consumer.clone().run(stop.clone())
                });
            Some((afc_relay_task, verdicts_task))
        }
        None => None,
    };
    let gauges_store = store.clone();
    let relay = relay::Relay {
        store: store.clone(),
        signals: relay::WorkflowSignals {
            store,
            tickets,
            spec: spec.ticket.clone(),
            history_limit: settings.history_limit,
        },
        producer: platform::kafka::producer_config(brokers).create()?,
        topic: topics.ticket_events.clone(),
    };
    let stop = shutdown.clone();
    let inbound_task = platform::ops::supervise(&health, "inbound", shutdown.clone(), move || {
        inbound.clone().run(stop.clone())
    });
    let stop = shutdown.clone();
    let relay_task =
        platform::ops::supervise(&health, "outbox-relay", shutdown.clone(), move || {
            relay.clone().run(stop.clone())
        });
    let stop = shutdown.clone();
    let gauges_task = platform::ops::supervise(&health, "gauges", shutdown.clone(), move || {
        gauges::run(gauges_store.clone(), stop.clone())
    });
    tracing::info!(%task_queue, "workflow service ready");

    // The worker is not Send: it runs on this task, next to the watcher that stops it.
    let (worker_res, ()) = tokio::join!(worker.run(), async {
        shutdown.cancelled().await;
        health.drain();
        stop_worker();
    });
    let _ = tokio::join!(
        inbound_task,
        relay_task,
        gauges_task,
        bot_relay_task,
        bot_replies_task
    );
    if let Some((relay, verdicts)) = verdict_task {
        let _ = tokio::join!(relay, verdicts);
    }
    worker_res?;
    Ok(())
}
