//! The external AFC provider against the real stack: the Kafka broker (per-test topic prefix),
//! Temporal (per-test task queue, in-process worker), PostgreSQL (per-test database), with the
//! verdict consumer, the AFC relay and the AFC emulator running in-process so a test can stop and
//! start them. Tests wait on queries or Kafka records with a deadline, never on a sleep.
//!
//! Two paths: the store's (`hold`: the inbound transaction holds the message and queues it, the
//! relay hands it over, the consumer applies the verdict; no workflow runs at all in those tests)
//! and the workflow's, which tickets started before it keep (`send`: the message is signalled to
//! the ticket workflow, which hands it over and applies the verdict).
//!
//! With `INBOX_RECORD_HISTORIES=1` the ok/suspicious test writes `tests/histories/afc_kafka.json`,
//! which `replay.rs` replays against the current code.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::EncodingKey;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use spec::checker::{CheckedSpec, InboundCheck};
use spec::{Spec, TicketSpec};
use sqlx::PgPool;
use temporalio_client::{
    Client, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowHandle,
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use testkit::fixtures::{manager, web_message};
use tickets::inbound::Intake;
use tickets::screening::{AfcRule, Check, Rules};
use tickets::{Caller, PgStore, ticket_id_opened_by};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workflow::activities::TicketActivities;
use workflow::afc_activities::{AfcActivities, AfcPublisher};
use workflow::afc_emulator::Emulator;
use workflow::afc_kafka::{
    AfcTopics, Cipher, VerdictClaims, VerdictKey, generate_key_pair, sign_verdict,
};
use workflow::afc_relay::AfcRelay;
use workflow::client::Tickets;
use workflow::ticket::{TicketWorkflow, workflow_id};
use workflow::verdicts::VerdictConsumer;

const WAIT: Duration = Duration::from_secs(45);

struct Afc {
    store: PgStore,
    pool: PgPool,
    client: Client,
    tickets: Tickets,
    queue: String,
    brokers: platform::kafka::KafkaSettings,
    topics: AfcTopics,
    cipher: Cipher,
    signing_pem: String,
    public_pem: String,
    producer: FutureProducer,
    spec: TicketSpec,
    /// The spec's `bots` section: commands the inbound transaction intercepts.
    bots: spec::Bots,
}

/// A running in-process component, stopped on `stop()`.
struct Running {
    token: CancellationToken,
    task: JoinHandle<()>,
}

/// Stops each loop, in the order given (the emulator before the consumer of its verdicts).
async fn stop_all(loops: impl IntoIterator<Item = Running>) -> anyhow::Result<()> {
    for l in loops {
        l.stop().await?;
    }
    Ok(())
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.token.cancel();
        self.task.await?;
        Ok(())
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

fn spec(timeout: &str) -> anyhow::Result<TicketSpec> {
    let text = format!(
        "version: 1\nafc:\n  provider: kafka\n  timeout: {timeout}\n  on_timeout: hold\n  blocked_warning: Blocked by AFC\n"
    );
    Ok(Spec::parse("afc.yaml", &text)?.ticket)
}

fn signer(pem: &str) -> anyhow::Result<EncodingKey> {
    Ok(EncodingKey::from_rsa_pem(pem.as_bytes())?)
}

impl Afc {
    async fn new(pool: PgPool, timeout: &str) -> anyhow::Result<Self> {
        Self::with_spec(pool, spec(timeout)?).await
    }

    async fn with_spec(pool: PgPool, spec: TicketSpec) -> anyhow::Result<Self> {
        let brokers = platform::kafka::KafkaSettings::plaintext(
            &std::env::var("INBOX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19093".into()),
        );
        let url =
            std::env::var("INBOX_TEMPORAL_URL").unwrap_or_else(|_| "http://127.0.0.1:17240".into());
        let client = workflow::client::connect(
            &platform::settings::temporal::TemporalSettings::plain(url.parse()?, "afc-test"),
            "afc-test",
        )
        .await
        .context("Temporal is not reachable: run the tests with `make test`, which starts it")?;
        let tag = Uuid::new_v4().simple().to_string();
        let topics = AfcTopics::with_prefix(&format!("afctest_{tag}."));
        platform::kafka::ensure_topics(&brokers, &topics.all())
            .await
            .context("Kafka is not reachable: run the tests with `make test`, which starts it")?;
        let (signing_pem, public_pem) = generate_key_pair()?;
        let queue = format!("afc-{tag}");
        Ok(Self {
            store: PgStore::from_pool(pool.clone()),
            pool,
            tickets: Tickets {
                client: client.clone(),
                task_queue: queue.clone(),
            },
            client,
            queue,
            producer: platform::kafka::producer_config(&brokers).create()?,
            brokers,
            topics,
            cipher: Cipher::from_hex(Some(&hex::encode(Uuid::new_v4().as_bytes()).repeat(2)))?,
            signing_pem,
            public_pem,
            spec,
            bots: spec::Bots::default(),
        })
    }

    fn worker(&self) -> anyhow::Result<Worker> {
        let runtime = Runtime::from_current_tokio(Default::default())?;
        let options = WorkerOptions::new(self.queue.clone())
            .register_workflow::<TicketWorkflow>()?
            .register_activities(TicketActivities {
                store: self.store.clone(),
                compiled: Default::default(),
            })
            .register_activities(AfcActivities {
                store: self.store.clone(),
                publisher: self.publisher()?,
            })
            // A restarted worker gets the next workflow task without waiting for the old sticky queue.
            .sticky_queue_schedule_to_start_timeout(Duration::from_secs(1))
            .build();
        Ok(Worker::new(&runtime, self.client.clone(), options)?)
    }

    fn publisher(&self) -> anyhow::Result<AfcPublisher> {
        Ok(AfcPublisher {
            producer: platform::kafka::producer_config(&self.brokers).create()?,
            topic: self.topics.msgs.clone(),
            cipher: self.cipher.clone(),
        })
    }

    fn check(&self) -> anyhow::Result<CheckedSpec> {
        Ok(CheckedSpec::compile(&self.spec)?)
    }

    /// The AFC relay: hands the store's AFC outbox over and raises the timeout alerts.
    fn relay(&self) -> anyhow::Result<Running> {
        let relay = AfcRelay {
            store: self.store.clone(),
            publisher: self.publisher()?,
        };
        let token = CancellationToken::new();
        let task = tokio::spawn(relay.run(token.clone()));
        Ok(Running { token, task })
    }

    /// Runs `scenario` next to an in-process worker; the worker stops when it ends.
    async fn with_worker<T>(
        &self,
        scenario: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let mut worker = self.worker()?;
        let stop = worker.shutdown_handle();
        let (worked, out) = tokio::join!(worker.run(), async {
            let r = scenario.await;
            stop();
            r
        });
        worked?;
        out
    }

    fn consumer(&self) -> anyhow::Result<Running> {
        let consumer = VerdictConsumer {
            kafka: self.brokers.clone(),
            fetch: Default::default(),
            topic: self.topics.verdicts.clone(),
            store: self.store.clone(),
            tickets: self.tickets.clone(),
            key: VerdictKey::from_setting(&self.public_pem)?,
            producer: platform::kafka::producer_config(&self.brokers).create()?,
            dlq_topic: self.topics.dlq.clone(),
            check: std::sync::Arc::new(self.check()?),
            history_limit: None,
        };
        let token = CancellationToken::new();
        let task = tokio::spawn(consumer.run(token.clone()));
        Ok(Running { token, task })
    }

    fn emulator(&self) -> anyhow::Result<Running> {
        let emulator = Emulator {
            kafka: self.brokers.clone(),
            topics: self.topics.clone(),
            group: format!("{}emulator", self.topics.msgs),
            cipher: self.cipher.clone(),
            signing_key: signer(&self.signing_pem)?,
            rules: Rules::compile(&[AfcRule {
                name: "card".into(),
                check: Check::CardNumber,
            }])?,
            delay: Duration::ZERO,
            error_rate: 0.0,
        };
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = emulator.run(t).await {
                panic!("emulator failed: {e}");
            }
        });
        Ok(Running { token, task })
    }

    /// Stores a client message and wakes (or starts) the client's ticket, as the inbound
    /// consumer does; returns the message id and the run id.
    async fn send(&self, client: &str, body: &str) -> anyhow::Result<(Uuid, String)> {
        let m = web_message(client, body);
        self.store.record_inbound(&m).await?;
        let run = self
            .tickets
            .message_arrived(client, m.id, ticket_id_opened_by(m.id), &self.spec, None)
            .await?;
        Ok((m.id, run))
    }

    /// The store path with one bot command, `/status`, and the AFC verdicts due in `timeout`.
    async fn with_commands(pool: PgPool, timeout: &str) -> anyhow::Result<Self> {
        let text = format!(
            "version: 1\nafc:\n  provider: kafka\n  timeout: {timeout}\n\
             bots:\n  commands:\n    - {{ name: status }}\n"
        );
        let parsed = Spec::parse("afc.yaml", &text)?;
        let mut afc = Self::with_spec(pool, parsed.ticket).await?;
        afc.bots = parsed.bots;
        Ok(afc)
    }

    /// The commands the bot relay would publish now.
    async fn unsent_commands(&self) -> anyhow::Result<Vec<Uuid>> {
        Ok(self
            .store
            .bot_commands_unsent(10)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }

    async fn command_status(&self, id: Uuid) -> anyhow::Result<String> {
        Ok(
            sqlx::query_scalar("SELECT status FROM bot_commands WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn tickets_of(&self, client: &str) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM tickets WHERE client_id = $1")
                .bind(client)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Takes a client message in as the inbound consumer does, with the spec's commands.
    async fn intake(&self, client: &str, body: &str) -> anyhow::Result<(Uuid, Intake)> {
        let m = web_message(client, body);
        let check = InboundCheck {
            spec: std::sync::Arc::new(self.check()?),
            bots: self.bots.clone(),
        };
        let intake = self
            .store
            .intake_batch(std::slice::from_ref(&m), &[], Some(&check))
            .await?;
        Ok((m.id, intake))
    }

    /// Takes a client message in as the inbound consumer does: one transaction stores it, opens
    /// the client's ticket and holds the message for AFC. Returns the message id.
    async fn hold(&self, client: &str, body: &str) -> anyhow::Result<Uuid> {
        let (id, intake) = self.intake(client, body).await?;
        assert_eq!(
            (intake.held, intake.wake.len()),
            (1, 0),
            "held by the store, no workflow woken"
        );
        Ok(id)
    }

    /// Publishes a verdict token as the AFC system would (or a forger).
    async fn verdict(
        &self,
        key: &EncodingKey,
        client: &str,
        message: Uuid,
        status: &str,
    ) -> anyhow::Result<()> {
        let token = sign_verdict(
            key,
            &VerdictClaims {
                chat_id: client.into(),
                message_id: message.to_string(),
                status: status.into(),
            },
        )?;
        self.publish_raw(client, token.as_bytes()).await
    }

    async fn publish_raw(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.producer
            .send(
                FutureRecord::to(&self.topics.verdicts)
                    .key(key)
                    .payload(value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    async fn afc_status(&self, message: Uuid) -> anyhow::Result<String> {
        Ok(
            sqlx::query_scalar("SELECT afc_status FROM messages WHERE id = $1")
                .bind(message)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn wait_status(&self, message: Uuid, status: &str) -> anyhow::Result<()> {
        until(&format!("message {message} {status}"), || async move {
            Ok((self.afc_status(message).await? == status).then_some(()))
        })
        .await
    }

    async fn ticket_status(&self, ticket: Uuid) -> anyhow::Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT status FROM tickets WHERE id = $1")
                .bind(ticket)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn count(&self, sql: &str, id: Uuid) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn events_of(&self, ticket: Uuid, kind: &str) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM events WHERE ticket_id = $1 AND kind = $2")
                .bind(ticket)
                .bind(kind)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A reader of the dead-letter topic from its start.
    fn dlq_reader(&self) -> anyhow::Result<StreamConsumer> {
        let c: StreamConsumer = platform::kafka::config(&self.brokers)
            .set("group.id", unique("dlq-reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        c.subscribe(&[&self.topics.dlq])?;
        Ok(c)
    }

    async fn record(&self, name: &str, client: &str, run_id: &str) -> anyhow::Result<()> {
        if std::env::var("INBOX_RECORD_HISTORIES").is_err() {
            return Ok(());
        }
        let handle: WorkflowHandle<Client, TicketWorkflow> = WorkflowHandle::new(
            self.client.clone(),
            WorkflowExecutionInfo::builder()
                .namespace("default")
                .workflow_id(workflow_id(client))
                .run_id(run_id.to_owned())
                .build(),
        );
        let json = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        let dir = platform::workspace_root().join("workflow/tests/histories");
        std::fs::write(dir.join(format!("{name}.json")), json)?;
        Ok(())
    }
}

impl Afc {
    /// The first record handed to AFC: sealed (no text of the test's messages in clear), and it
    /// opens with the key.
    async fn first_handed_over(&self) -> anyhow::Result<workflow::afc_kafka::AfcMessage> {
        let reader: StreamConsumer = platform::kafka::config(&self.brokers)
            .set("group.id", unique("msgs-reader"))
            .set("auto.offset.reset", "earliest")
            .create()?;
        reader.subscribe(&[&self.topics.msgs])?;
        let record = tokio::time::timeout(WAIT, reader.recv()).await??;
        let value = record.payload().unwrap_or_default();
        assert!(!value.windows(5).any(|w| w == b"hello" || w == b"4111 "));
        Ok(self.cipher.open(value)?)
    }

    /// AFC is down: each of `held` raises one alert (for operators only) once its timeout passed
    /// and stays held; the ready `manager` got nothing.
    async fn held_and_alerted(
        &self,
        ticket: Uuid,
        held: &[Uuid],
        manager: &Caller,
    ) -> anyhow::Result<()> {
        let n = i64::try_from(held.len())?;
        until("an afc_timeout alert per held message", || async {
            Ok((self.events_of(ticket, "afc_timeout").await? == n).then_some(()))
        })
        .await?;
        for m in held {
            assert_eq!(
                self.afc_status(*m).await?,
                "pending",
                "held, never shown unchecked"
            );
        }
        assert!(
            self.store
                .manager_tickets(&manager.user_id, &[])
                .await?
                .is_empty(),
            "the ready manager got nothing"
        );
        let visible = self.count(
            "SELECT count(*) FROM events WHERE ticket_id = $1 AND kind = 'afc_timeout' AND (client_visible OR manager_id IS NOT NULL)",
            ticket,
        ).await?;
        assert_eq!(visible, 0, "alerts are for operators only");
        Ok(())
    }

    /// AFC answered: `held` reach `manager` in their order, still with one alert each.
    async fn released_to(
        &self,
        ticket: Uuid,
        held: &[Uuid],
        manager: &Caller,
    ) -> anyhow::Result<()> {
        let shown = until("the held messages shown to the manager", || async {
            let shown = self
                .store
                .manager_messages(&manager.user_id, ticket)
                .await
                .unwrap_or_default();
            Ok((shown.len() == held.len()).then_some(shown))
        })
        .await?;
        assert_eq!(shown.iter().map(|m| m.id).collect::<Vec<_>>(), held);
        assert_eq!(
            self.events_of(ticket, "afc_timeout").await?,
            i64::try_from(held.len())?,
            "one alert per message"
        );
        Ok(())
    }

    /// `msg` passed: the same verdict again changes nothing, a contradicting one is
    /// dead-lettered.
    async fn repeat_and_contradict(
        &self,
        dlq: &StreamConsumer,
        client: &str,
        msg: Uuid,
        ticket: Uuid,
    ) -> anyhow::Result<()> {
        let genuine = signer(&self.signing_pem)?;
        let events = "SELECT count(*) FROM events WHERE ticket_id = $1";
        let events_before = self.count(events, ticket).await?;
        // Same partition (same key), handled in order: once the contradiction is dead-lettered,
        // the duplicate before it was handled too.
        self.verdict(&genuine, client, msg, "ok").await?;
        self.verdict(&genuine, client, msg, "suspicious").await?;
        let dead = next_dead_letter(dlq).await?;
        let reason = dead["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("verdict suspicious contradicts the earlier verdict ok"),
            "{reason}"
        );
        assert_eq!(self.afc_status(msg).await?, "passed");
        let recorded: String =
            sqlx::query_scalar("SELECT status FROM afc_verdicts WHERE message_id = $1")
                .bind(msg)
                .fetch_one(&self.pool)
                .await?;
        assert_eq!(recorded, "ok");
        // A sentinel behind them on the same partition: once it is dead-lettered, the duplicate
        // (and a wake-up of a workflow) was handled too, and no event was written for either
        // (no second `message_visible`, no `message_blocked`).
        self.verdict(&genuine, client, Uuid::new_v4(), "ok").await?;
        next_dead_letter(dlq).await?;
        assert_eq!(self.count(events, ticket).await?, events_before);
        Ok(())
    }

    /// AFC found the manager reply suspicious: one operator alert, the verdict recorded.
    async fn reply_flagged(&self, ticket: Uuid, reply: Uuid) -> anyhow::Result<()> {
        until("reply flagged", || async {
            Ok((self.events_of(ticket, "afc_reply_flagged").await? == 1).then_some(()))
        })
        .await?;
        let recorded: String =
            sqlx::query_scalar("SELECT status FROM afc_verdicts WHERE message_id = $1")
                .bind(reply)
                .fetch_one(&self.pool)
                .await?;
        assert_eq!(recorded, "suspicious");
        Ok(())
    }
}

/// The next dead-lettered reason, as JSON.
async fn next_dead_letter(reader: &StreamConsumer) -> anyhow::Result<serde_json::Value> {
    let record = tokio::time::timeout(WAIT, reader.recv())
        .await
        .context("no dead letter within the deadline")??;
    Ok(serde_json::from_slice(
        record.payload().unwrap_or_default(),
    )?)
}

/// Re-runs `check` until it yields a value; fails after [`WAIT`].
async fn until<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    testkit::eventually(WAIT, what, check).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_afc_system_passes_ok_messages_to_the_queue_and_blocks_suspicious_ones(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "30s").await?;
    let (consumer, emulator) = (afc.consumer()?, afc.emulator()?);
    let client = unique("afc-ok");
    afc.with_worker(async {
        let (hello, run) = afc.send(&client, "hello, my transfer is stuck").await?;
        let ticket = ticket_id_opened_by(hello);
        afc.wait_status(hello, "passed").await?;
        assert_eq!(afc.ticket_status(ticket).await?.as_deref(), Some("waiting"), "queued");

        let (card, _) = afc.send(&client, "my card is 4111 1111 1111 1111").await?;
        afc.wait_status(card, "blocked").await?;
        assert_eq!(afc.events_of(ticket, "message_blocked").await?, 1);
        assert_eq!(
            afc.count("SELECT count(*) FROM afc_verdicts WHERE client_id = (SELECT client_id FROM messages WHERE id = $1)", hello).await?,
            2
        );
        afc.record("afc_kafka", &client, &run).await
    })
    .await?;
    let opened = afc.first_handed_over().await?;
    assert!(opened.from_client);
    assert_eq!(opened.chat_id, client);
    stop_all([emulator, consumer]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn forged_and_malformed_verdicts_are_dead_lettered_and_change_nothing(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "30s").await?;
    let consumer = afc.consumer()?;
    let dlq = afc.dlq_reader()?;
    let client = unique("afc-forged");
    afc.with_worker(async {
        let (msg, _) = afc.send(&client, "hello").await?;
        let ticket = ticket_id_opened_by(msg);
        until("message handed to AFC", || async {
            let sent: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("SELECT afc_sent_at FROM messages WHERE id = $1")
                    .bind(msg)
                    .fetch_one(&afc.pool)
                    .await?;
            Ok(sent)
        })
        .await?;

        let (forger_pem, _) = generate_key_pair()?;
        let genuine = signer(&afc.signing_pem)?;
        afc.verdict(&signer(&forger_pem)?, &client, msg, "ok")
            .await?;
        afc.verdict(&genuine, &client, msg, "maybe").await?;
        afc.verdict(&genuine, &client, Uuid::new_v4(), "ok").await?;
        afc.verdict(&genuine, "someone-else", msg, "ok").await?;
        afc.publish_raw(&client, b"{\"status\": \"ok\"}").await?;
        let mut reasons = Vec::new();
        for _ in 0..5 {
            reasons.push(
                next_dead_letter(&dlq).await?["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        reasons.sort();
        for (reason, expected) in reasons.iter().zip([
            "bad signature",
            "bad status \"maybe\"",
            "chat id \"someone-else\" does not own",
            "not a JWT",
            "unknown message",
        ]) {
            assert!(
                reason.starts_with(expected),
                "{reason:?} should start with {expected:?}"
            );
        }
        // Nothing changed: still held, no verdict recorded, the ticket not queued.
        assert_eq!(afc.afc_status(msg).await?, "pending");
        assert_eq!(
            afc.count(
                "SELECT count(*) FROM afc_verdicts WHERE message_id = $1",
                msg
            )
            .await?,
            0
        );
        assert_eq!(afc.ticket_status(ticket).await?.as_deref(), Some("open"));

        // The genuine verdict still goes through.
        afc.verdict(&genuine, &client, msg, "ok").await?;
        afc.wait_status(msg, "passed").await
    })
    .await?;
    consumer.stop().await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn messages_stay_held_while_afc_is_down_raise_a_timeout_alert_and_are_released_when_it_is_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "1s").await?;
    let consumer = afc.consumer()?;
    let client = unique("afc-down");
    let alice = manager(&unique("alice"));
    afc.store.set_ready(&alice, 3).await?;
    afc.with_worker(async {
        let (first, _) = afc.send(&client, "hello, are you there?").await?;
        let (second, _) = afc.send(&client, "my transfer is stuck").await?;
        let ticket = ticket_id_opened_by(first);
        afc.held_and_alerted(ticket, &[first, second], &alice)
            .await?;
        // AFC comes back: the held messages are checked and released to the manager.
        let emulator = afc.emulator()?;
        afc.released_to(ticket, &[first, second], &alice).await?;
        emulator.stop().await
    })
    .await?;
    consumer.stop().await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_duplicate_verdict_changes_nothing_and_a_contradicting_one_is_dead_lettered(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "30s").await?;
    let consumer = afc.consumer()?;
    let dlq = afc.dlq_reader()?;
    let client = unique("afc-dup");
    afc.with_worker(async {
        let (msg, _) = afc.send(&client, "hello").await?;
        let genuine = signer(&afc.signing_pem)?;
        afc.verdict(&genuine, &client, msg, "ok").await?;
        afc.wait_status(msg, "passed").await?;
        afc.repeat_and_contradict(&dlq, &client, msg, ticket_id_opened_by(msg))
            .await
    })
    .await?;
    consumer.stop().await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn verdicts_that_arrive_while_the_worker_is_down_are_applied_once_it_is_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "30s").await?;
    let client = unique("afc-restart");
    let consumer = afc.consumer()?;
    // First worker: the messages are handed to AFC (which is down), then the worker goes away.
    let (first, second) = afc
        .with_worker(async {
            let (first, _) = afc.send(&client, "hello").await?;
            let (second, _) = afc.send(&client, "still waiting").await?;
            until("both handed to AFC", || async {
                let n = afc
                    .count("SELECT count(*) FROM messages WHERE client_id = (SELECT client_id FROM messages WHERE id = $1) AND afc_sent_at IS NOT NULL", first)
                    .await?;
                Ok((n == 2).then_some(()))
            })
            .await?;
            Ok((first, second))
        })
        .await?;
    // The consumer restarts too, and resumes from its saved offset.
    consumer.stop().await?;
    let consumer = afc.consumer()?;

    // No worker: AFC answers, the verdicts are recorded and signalled, nothing is applied yet.
    let emulator = afc.emulator()?;
    until("both verdicts recorded", || async {
        let n = afc
            .count(
                "SELECT count(*) FROM afc_verdicts WHERE message_id = $1",
                first,
            )
            .await?
            + afc
                .count(
                    "SELECT count(*) FROM afc_verdicts WHERE message_id = $1",
                    second,
                )
                .await?;
        Ok((n == 2).then_some(()))
    })
    .await?;
    assert_eq!(afc.afc_status(first).await?, "pending");
    assert_eq!(afc.afc_status(second).await?, "pending");

    // A new worker picks the ticket up and applies both: nothing lost.
    afc.with_worker(async {
        afc.wait_status(first, "passed").await?;
        afc.wait_status(second, "passed").await?;
        assert_eq!(
            afc.ticket_status(ticket_id_opened_by(first))
                .await?
                .as_deref(),
            Some("waiting")
        );
        Ok(())
    })
    .await?;
    stop_all([emulator, consumer]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn manager_replies_go_to_afc_when_the_spec_asks_and_a_suspicious_one_raises_an_alert(
    pool: PgPool,
) -> anyhow::Result<()> {
    let text =
        "version: 1\nafc:\n  provider: kafka\n  timeout: 30s\n  check_manager_replies: true\n";
    let afc = Afc::with_spec(pool, Spec::parse("afc.yaml", text)?.ticket).await?;
    let (consumer, emulator) = (afc.consumer()?, afc.emulator()?);
    let client = unique("afc-replies");
    let alice = manager(&unique("alice"));
    afc.store.set_ready(&alice, 3).await?;
    afc.with_worker(async {
        let (hello, _) = afc.send(&client, "hello").await?;
        let ticket = ticket_id_opened_by(hello);
        until("ticket assigned", || async {
            Ok((afc.ticket_status(ticket).await?.as_deref() == Some("assigned")).then_some(()))
        })
        .await?;
        let reply = afc
            .store
            .send_reply(&alice, ticket, "r1", "test card 4111 1111 1111 1111")
            .await?;
        // What the outbox relay does after the reply committed.
        afc.tickets
            .manager_replied(&client, ticket, &alice.user_id)
            .await?;
        afc.reply_flagged(ticket, reply).await
    })
    .await?;
    stop_all([emulator, consumer]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn held_messages_are_handed_over_by_the_store_and_their_verdicts_applied_there_without_a_workflow(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "30s").await?;
    let (relay, consumer, emulator) = (afc.relay()?, afc.consumer()?, afc.emulator()?);
    let dlq = afc.dlq_reader()?;
    let client = unique("afc-store");
    let alice = manager(&unique("alice"));
    afc.store.set_ready(&alice, 3).await?;
    // No Temporal worker runs: the message path is PostgreSQL and Kafka only.
    let hello = afc.hold(&client, "hello, my transfer is stuck").await?;
    let ticket = ticket_id_opened_by(hello);
    afc.wait_status(hello, "passed").await?;
    let card = afc.hold(&client, "my card is 4111 1111 1111 1111").await?;
    afc.wait_status(card, "blocked").await?;
    assert_eq!(
        afc.ticket_status(ticket).await?.as_deref(),
        Some("assigned"),
        "queued and matched"
    );
    let shown = afc.store.manager_messages(&alice.user_id, ticket).await?;
    assert_eq!(
        shown.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![hello],
        "the blocked one never shown"
    );
    assert_eq!(afc.events_of(ticket, "message_blocked").await?, 1);
    assert_eq!(afc.events_of(ticket, "ticket_opened").await?, 1);
    assert_eq!(afc.events_of(ticket, "ticket_queued").await?, 1);
    let in_flight: i64 = sqlx::query_scalar("SELECT count(*) FROM afc_outbox")
        .fetch_one(&afc.pool)
        .await?;
    assert_eq!(in_flight, 0, "answered messages leave the AFC outbox");
    afc.repeat_and_contradict(&dlq, &client, hello, ticket)
        .await?;
    assert_eq!(
        afc.first_handed_over().await?.id,
        hello,
        "handed over in the order they were held"
    );
    stop_all([emulator, consumer, relay]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_store_alerts_once_per_message_while_afc_is_down_and_releases_the_messages_when_it_is_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "1s").await?;
    let (relay, consumer) = (afc.relay()?, afc.consumer()?);
    let client = unique("afc-store-down");
    let alice = manager(&unique("alice"));
    afc.store.set_ready(&alice, 3).await?;
    let first = afc.hold(&client, "hello, are you there?").await?;
    let second = afc.hold(&client, "my transfer is stuck").await?;
    let ticket = ticket_id_opened_by(first);
    afc.held_and_alerted(ticket, &[first, second], &alice)
        .await?;
    // The relay restarts (a new process): the alerts are not raised again.
    relay.stop().await?;
    let relay = afc.relay()?;
    let emulator = afc.emulator()?;
    afc.released_to(ticket, &[first, second], &alice).await?;
    stop_all([emulator, consumer, relay]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_reply_of_a_ticket_whose_spec_checks_replies_goes_to_afc_from_its_own_transaction(
    pool: PgPool,
) -> anyhow::Result<()> {
    let text =
        "version: 1\nafc:\n  provider: kafka\n  timeout: 30s\n  check_manager_replies: true\n";
    let afc = Afc::with_spec(pool, Spec::parse("afc.yaml", text)?.ticket).await?;
    let (relay, consumer, emulator) = (afc.relay()?, afc.consumer()?, afc.emulator()?);
    let client = unique("afc-store-replies");
    let alice = manager(&unique("alice"));
    afc.store.set_ready(&alice, 3).await?;
    let hello = afc.hold(&client, "hello").await?;
    let ticket = ticket_id_opened_by(hello);
    until("ticket assigned", || async {
        Ok((afc.ticket_status(ticket).await?.as_deref() == Some("assigned")).then_some(()))
    })
    .await?;
    let reply = afc
        .store
        .send_reply(&alice, ticket, "r1", "test card 4111 1111 1111 1111")
        .await?;
    afc.reply_flagged(ticket, reply).await?;
    stop_all([emulator, consumer, relay]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_verdict_that_arrives_after_its_ticket_closed_opens_the_clients_next_ticket(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::new(pool, "30s").await?;
    let (relay, consumer) = (afc.relay()?, afc.consumer()?);
    let client = unique("afc-store-closed");
    let held = afc.hold(&client, "hello?").await?;
    let first_ticket = ticket_id_opened_by(held);
    until("handed to AFC", || async {
        Ok((afc
            .count(
                "SELECT count(*) FROM messages WHERE id = $1 AND afc_sent_at IS NOT NULL",
                held,
            )
            .await?
            == 1)
            .then_some(()))
    })
    .await?;
    assert!(
        afc.store
            .close_ticket(first_ticket, "resolved", "Bye", None)
            .await?
    );

    let emulator = afc.emulator()?;
    afc.wait_status(held, "passed").await?;
    let next: Option<Uuid> = sqlx::query_scalar("SELECT ticket_id FROM messages WHERE id = $1")
        .bind(held)
        .fetch_one(&afc.pool)
        .await?;
    let next = next.context("the message is attached to a ticket")?;
    assert_eq!(
        next,
        workflow::ticket::next_ticket_id(first_ticket),
        "named after the closed one"
    );
    assert_eq!(afc.ticket_status(next).await?.as_deref(), Some("waiting"));
    assert_eq!(
        afc.events_of(next, "ticket_opened").await?,
        1,
        "its workflow is started by the signaller"
    );
    stop_all([emulator, consumer, relay]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_command_waits_for_the_afc_verdict_then_goes_to_the_bot_and_a_blocked_one_is_warned_on_a_ticket(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::with_commands(pool, "30s").await?;
    let (relay, consumer) = (afc.relay()?, afc.consumer()?);
    let client = unique("afc-command");
    let alice = manager(&unique("alice"));
    afc.store.set_ready(&alice, 3).await?;

    let (status, intake) = afc.intake(&client, "/status").await?;
    assert_eq!(
        (
            intake.held,
            intake.commands,
            intake.opened.len(),
            intake.wake.len()
        ),
        (1, 0, 0, 0),
        "held for AFC, not yet the bot's, of no ticket"
    );
    assert_eq!(afc.command_status(status).await?, "held");
    assert_eq!(
        afc.count(
            "SELECT count(*) FROM afc_outbox WHERE message_id = $1 AND ticket_id IS NULL",
            status
        )
        .await?,
        1,
        "queued for AFC with no ticket"
    );
    until("the command handed to AFC", || async {
        Ok((afc
            .count(
                "SELECT count(*) FROM messages WHERE id = $1 AND afc_sent_at IS NOT NULL",
                status,
            )
            .await?
            == 1)
            .then_some(()))
    })
    .await?;
    assert!(
        afc.unsent_commands().await?.is_empty(),
        "the bot gets nothing before the verdict"
    );

    let emulator = afc.emulator()?;
    afc.wait_status(status, "passed").await?;
    assert_eq!(afc.command_status(status).await?, "queued");
    assert_eq!(afc.unsent_commands().await?, vec![status], "the bot's now");
    assert_eq!(
        afc.tickets_of(&client).await?,
        0,
        "a command opens no ticket"
    );
    assert!(
        afc.store
            .manager_tickets(&alice.user_id, &[])
            .await?
            .is_empty(),
        "no manager sees a command"
    );

    let (card, intake) = afc.intake(&client, "/status 4111 1111 1111 1111").await?;
    assert_eq!(intake.held, 1);
    afc.wait_status(card, "blocked").await?;
    assert_eq!(
        afc.command_status(card).await?,
        "blocked",
        "never the bot's"
    );
    assert_eq!(afc.unsent_commands().await?, vec![status]);
    let ticket: Option<Uuid> = sqlx::query_scalar("SELECT ticket_id FROM messages WHERE id = $1")
        .bind(card)
        .fetch_one(&afc.pool)
        .await?;
    let ticket = ticket.context("blocked on the client's ticket, as any message")?;
    assert_eq!(
        afc.events_of(ticket, "message_blocked").await?,
        1,
        "the client is warned"
    );
    // The client writes on: the ticket is queued and matched; its manager never sees the command.
    let (hello, _) = afc.intake(&client, "hello, is my card blocked?").await?;
    afc.wait_status(hello, "passed").await?;
    until("the ticket assigned", || async {
        Ok((afc.ticket_status(ticket).await?.as_deref() == Some("assigned")).then_some(()))
    })
    .await?;
    let shown = afc.store.manager_messages(&alice.user_id, ticket).await?;
    assert_eq!(
        shown.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![hello],
        "neither command is shown"
    );
    stop_all([emulator, consumer, relay]).await
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_command_whose_verdict_is_overdue_raises_one_alert_of_no_ticket_and_waits_for_the_verdict(
    pool: PgPool,
) -> anyhow::Result<()> {
    let afc = Afc::with_commands(pool, "1s").await?;
    let (relay, consumer) = (afc.relay()?, afc.consumer()?);
    let client = unique("afc-command-down");
    let (status, intake) = afc.intake(&client, "/status").await?;
    assert_eq!(intake.held, 1);
    let alerts = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events
             WHERE client_id = $1 AND kind = 'afc_timeout' AND ticket_id IS NULL
               AND payload->>'message_id' = $2 AND NOT client_visible AND manager_id IS NULL",
        )
        .bind(&client)
        .bind(status.to_string())
        .fetch_one(&afc.pool)
        .await?;
        anyhow::Ok(n)
    };
    until("an afc_timeout alert of no ticket", || async {
        Ok((alerts().await? == 1).then_some(()))
    })
    .await?;
    assert_eq!(afc.afc_status(status).await?, "pending", "still held");
    assert!(
        afc.unsent_commands().await?.is_empty(),
        "not the bot's before its verdict"
    );
    // AFC is back: the verdict releases it to the bot; the alert was raised once.
    let emulator = afc.emulator()?;
    afc.wait_status(status, "passed").await?;
    assert_eq!(afc.unsent_commands().await?, vec![status]);
    assert_eq!(alerts().await?, 1, "one alert per message");
    assert_eq!(
        afc.tickets_of(&client).await?,
        0,
        "a command opens no ticket"
    );
    stop_all([emulator, consumer, relay]).await
}
