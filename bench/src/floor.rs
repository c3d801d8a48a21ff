//! The floor: what the components the engine is built from cost on their own, on this machine, in
//! this run. A Kafka produce→consume round trip, a Temporal signal → workflow task → local activity
//! round trip on an empty workflow (the shape of one client message in a ticket workflow), and one
//! PostgreSQL insert commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::Connection;
use temporalio_client::{Client, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{LocalActivityOptions, SyncWorkflowContext, WorkflowContext, WorkflowResult};
use tokio::sync::oneshot;

/// Kafka: produce one record (acks=all, idempotent, as the engine does) and wait until a consumer
/// of that partition reads it; `n` times, one after another.
pub async fn kafka(brokers: &str, topic: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let brokers = &platform::kafka::KafkaSettings::plaintext(brokers);
    platform::kafka::ensure_topics(brokers, &[topic]).await?;
    let producer: FutureProducer = platform::kafka::producer_config(brokers).create()?;
    let consumer: StreamConsumer = platform::kafka::config(brokers)
        .set("group.id", "bench-floor")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::End)?;
    consumer.assign(&tpl)?;
    // The consumer resolves its start (the end of the partition) lazily: until it has, a record
    // produced is not seen. Produce until one is read back; it warms up connections too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("warm-up")
                    .payload("warm-up"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(r) => {
                r?;
                break;
            }
            Err(_) => anyhow::ensure!(
                Instant::now() < deadline,
                "kafka floor: nothing read back within 60 s"
            ),
        }
    }
    let mut out = Vec::with_capacity(n);
    // The first records also warm up: not counted.
    for i in 0..n + 5 {
        let key = i.to_string();
        let t = Instant::now();
        producer
            .send(
                FutureRecord::to(topic).partition(0).key(&key).payload(&key),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                .await
                .context("kafka floor: no record within 10 s")??;
            if m.key() == Some(key.as_bytes()) {
                break;
            }
        }
        if i >= 5 {
            out.push(t.elapsed());
        }
    }
    Ok(out)
}

/// PostgreSQL: one single-row insert, committed; `n` times, one after another.
pub async fn postgres(database_url: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut db = sqlx::PgConnection::connect(database_url).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        .execute(&mut db)
        .await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        sqlx::query("INSERT INTO bench_floor (body) VALUES ($1)")
            .bind(format!("sample {i}"))
            .execute(&mut db)
            .await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// Sample ids whose activity ran, and who waits for them.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, oneshot::Sender<Instant>>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Instant>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct FloorActivities {
    pub waiters: Arc<Waiters>,
}

#[activities]
impl FloorActivities {
    /// Does nothing but say when it ran.
    #[activity]
    pub async fn touch(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ids: Vec<u64>,
    ) -> Result<(), ActivityError> {
        let now = Instant::now();
        let mut map = self.waiters.lock();
        for id in ids {
            if let Some(tx) = map.remove(&id) {
                let _ = tx.send(now);
            }
        }
        Ok(())
    }
}

/// An empty workflow shaped like a ticket: each signal wakes it, one local activity per workflow
/// task handles every signal that arrived, until `stop`.
#[workflow]
#[derive(Default)]
pub struct FloorWorkflow {
    pending: Vec<u64>,
    stop: bool,
}

#[workflow_methods]
impl FloorWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, _input: ()) -> WorkflowResult<u64> {
        let mut handled = 0u64;
        loop {
            ctx.wait_condition(|s: &Self| s.stop || !s.pending.is_empty())
                .await?;
            let batch = ctx.state_mut(|s| std::mem::take(&mut s.pending));
            if batch.is_empty() {
                return Ok(handled);
            }
            handled += batch.len() as u64;
            ctx.execute_local_activity(
                FloorActivities::touch,
                batch,
                LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(30))
                    .build(),
            )
            .await?;
        }
    }

    #[signal]
    pub fn ping(&mut self, _ctx: &mut SyncWorkflowContext<Self>, id: u64) {
        self.pending.push(id);
    }

    #[signal]
    pub fn stop(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _unit: ()) {
        self.stop = true;
    }
}

/// Floor workflows on one task queue, served by the benchmark's own worker.
pub struct TemporalFloor {
    pub client: Client,
    pub task_queue: String,
    pub waiters: Arc<Waiters>,
    pub workflows: Vec<String>,
    next: std::sync::atomic::AtomicU64,
}

impl TemporalFloor {
    pub fn new(client: Client, task_queue: String, waiters: Arc<Waiters>) -> Self {
        Self {
            client,
            task_queue,
            waiters,
            workflows: Vec::new(),
            next: 0.into(),
        }
    }

    /// Starts `n` floor workflows (not timed).
    pub async fn start(&mut self, n: usize) -> anyhow::Result<()> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        for i in 0..n {
            let id = format!("bench-floor-{run}-{i}");
            self.client
                .start_workflow(
                    FloorWorkflow::run,
                    (),
                    WorkflowStartOptions::new(self.task_queue.clone(), id.clone()).build(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("starting a floor workflow: {e}"))?;
            self.workflows.push(id);
        }
        Ok(())
    }

    /// One round trip on workflow `w`: signal sent → its activity ran.
    pub async fn round_trip(&self, w: usize) -> anyhow::Result<Duration> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, tx);
        let t = Instant::now();
        let handle = self
            .client
            .get_workflow_handle::<FloorWorkflow>(self.workflows[w % self.workflows.len()].clone());
        // Past its rate the server turns signals away ("Workflow is busy"): retried, and the
        // wait counts, as a client of the engine would wait.
        let mut backoff = Duration::from_millis(10);
        loop {
            match handle
                .signal(FloorWorkflow::ping, id, WorkflowSignalOptions::default())
                .await
            {
                Ok(()) => break,
                Err(e)
                    if e.to_string().contains("exhausted")
                        && t.elapsed() < Duration::from_secs(60) =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => anyhow::bail!("signalling a floor workflow: {e}"),
            }
        }
        let done = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .context("temporal floor: no activity within 60 s")??;
        Ok(done.saturating_duration_since(t))
    }

    /// Ends every floor workflow.
    pub async fn stop(&self) {
        for id in &self.workflows {
            let _ = self
                .client
                .get_workflow_handle::<FloorWorkflow>(id.clone())
                .signal(FloorWorkflow::stop, (), WorkflowSignalOptions::default())
                .await;
        }
    }
}
