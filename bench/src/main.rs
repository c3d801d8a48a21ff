//! `make bench`: drives the engine through its real client edge and reports throughput, latency
//! from accepted to visible in the manager's stream, resources of every process, and the floor of
//! the components (Kafka, Temporal, PostgreSQL) measured in the same run on the same machine.
//!
//! It starts its own engine (the three services as processes, with their own database, topics and
//! task queue, via the e2e harness) on the dev stack `scripts/stack.sh up` runs, so it never
//! touches `make run`'s data. Figures are printed as a table and written as JSON.

mod floor;
mod load;
mod procs;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use e2e::{Engine, Stack};
use futures::StreamExt;
use proto::v1::{self, manager_service_client::ManagerServiceClient};
use rdkafka::consumer::BaseConsumer;
use serde_json::json;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tickets::Role;
use tokio::sync::watch;

use crate::load::{BenchClient, Clock, Edge, StepFigures, authed};
use crate::procs::{Component, Usage};
use crate::stats::{Summary, ratio};

#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(about = "End-to-end benchmark of the inbox engine against the floor of its components")]
struct Args {
    /// Target rates to sweep, messages/s.
    #[arg(long, value_delimiter = ',', default_values_t = vec![25.0, 50.0, 100.0])]
    rates: Vec<f64>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Open tickets (one client each) over which the load is spread.
    #[arg(long, default_value_t = 100)]
    tickets: usize,
    /// Ready managers; each takes tickets/managers (rounded up).
    #[arg(long, default_value_t = 10)]
    managers: usize,
    /// A manager replies to every n-th message it sees (0: never).
    #[arg(long, default_value_t = 4)]
    reply_every: u64,
    /// Percent of clients writing over gRPC; the rest use web chat HTTP.
    #[arg(long, default_value_t = 50)]
    grpc_percent: usize,
    /// Sequential samples for each idle floor.
    #[arg(long, default_value_t = 100)]
    floor_samples: usize,
    /// Empty workflows the Temporal floor spreads its signals over.
    #[arg(long, default_value_t = 50)]
    floor_workflows: usize,
    /// Seconds of the Temporal floor at each step's rate (0: skip).
    #[arg(long, default_value_t = 5)]
    floor_at_rate_secs: u64,
    /// Sends in flight at most; a tick beyond it is shed (counted, not offered).
    #[arg(long, default_value_t = 2000)]
    max_inflight: usize,
    /// Seconds to wait after each step for accepted messages to become visible.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Seconds to wait for every ticket to be opened and assigned before the sweep.
    #[arg(long, default_value_t = 300)]
    setup_secs: u64,
    /// Seconds of idle measurement (every ticket open, no messages) before the sweep: the
    /// floor each process burns with nothing to do (0: skip).
    #[arg(long, default_value_t = 15)]
    idle_secs: u64,
    /// Run on the dev cluster (`fsync=off`, which flatters every commit) instead of a durable
    /// PostgreSQL of the benchmark's own (`fsync`, `full_page_writes`, `synchronous_commit` on).
    #[arg(long)]
    no_fsync: bool,
    /// The external AFC provider: the spec's `afc.provider` is `kafka`, every message is held
    /// until the bank's AFC system (the `afc-emulator`, started here) signs its verdict.
    #[arg(long)]
    afc_kafka: bool,
    /// Directory for the JSON report.
    #[arg(long, default_value = ".dev/bench")]
    out: PathBuf,
}

fn repo_root() -> PathBuf {
    platform::workspace_root()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::from_env().await?;
    let temporal = workflow::client::connect(
        &platform::settings::temporal::TemporalSettings::plain(
            stack.temporal_url.parse()?,
            "inbox-bench",
        ),
        "inbox-bench",
    )
    .await?;
    // The floor's worker runs next to the benchmark for the whole run, on its own task queue.
    let waiters = Arc::new(floor::Waiters::default());
    let task_queue = format!("bench-floor-{}", uuid::Uuid::new_v4().simple());
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(task_queue.clone())
        .register_workflow::<floor::FloorWorkflow>()?
        .register_activities(floor::FloorActivities {
            waiters: waiters.clone(),
        })
        .build();
    let mut worker = Worker::new(&runtime, temporal.clone(), options)?;
    let stop_worker = worker.shutdown_handle();
    let tfloor = floor::TemporalFloor::new(temporal, task_queue, waiters);
    let (worker_res, res) = tokio::join!(worker.run(), async {
        let r = run(args, stack, tfloor).await;
        stop_worker();
        r
    });
    res?;
    worker_res?;
    Ok(())
}

#[derive(serde::Serialize)]
struct Floors {
    kafka_ms: Summary,
    temporal_ms: Summary,
    postgres_ms: Summary,
    /// Kafka + Temporal + PostgreSQL, percentile by percentile: a lower bound for one message.
    sum_ms: Summary,
}

#[derive(serde::Serialize)]
struct Step {
    #[serde(flatten)]
    figures: StepFigures,
    /// Calls the engine made to the Temporal frontend during the step, per accepted message
    /// (`inbox_temporal_calls_total` of the workflow and gateway services).
    temporal_calls_per_message: f64,
    temporal_floor_at_rate_ms: Option<Summary>,
    e2e_p50_over_floor_p50: f64,
    e2e_p99_over_floor_p99: f64,
    e2e_p99_over_temporal_floor_p99: f64,
    e2e_p99_over_temporal_floor_at_rate_p99: Option<f64>,
    resources: BTreeMap<String, Usage>,
}

async fn run(args: Args, mut stack: Stack, mut tfloor: floor::TemporalFloor) -> anyhow::Result<()> {
    // Durable unless asked: the engine's database on a cluster that flushes every commit.
    let durable_pg = if args.no_fsync {
        None
    } else {
        let pg = e2e::private_stack::DurablePostgres::start().await?;
        stack.database_url = pg.url();
        Some(pg)
    };
    let machine = procs::machine();
    println!(
        "machine: {} cores, {}, load average {} (shared with other work: figures vary)",
        machine["cores"], machine["model"], machine["loadavg"]
    );
    println!("engine: {}", engine_build());

    // The engine, on a spec of its own: builtin AFC, capacity to hold every ticket, no timers.
    let managers = args.managers.max(1);
    let capacity = args.tickets.div_ceil(managers).max(1);
    let dir = std::env::temp_dir().join(format!("bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let spec = dir.join("workflows.yaml");
    let afc = if args.afc_kafka {
        "provider: kafka\n  timeout: 30s\n  on_timeout: hold"
    } else {
        "provider: builtin\n  rules:\n    - name: card\n      detector: card_number"
    };
    std::fs::write(
        &spec,
        format!("version: 1\nafc:\n  {afc}\nassignment:\n  capacity: {capacity}\n"),
    )?;
    // The bank's AFC system, on the engine's topics (it writes its key pair first).
    let mut afc_env = Vec::new();
    let emulator = if args.afc_kafka {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("bench_afc_{tag}.");
        let keys = dir.join("afc-keys");
        let aes_key = format!("{tag}{tag}");
        println!("afc: the external provider (afc-emulator on {prefix}*)");
        let emulator = e2e::afc::AfcEmulator::start(&stack, &prefix, &keys, &aes_key, true).await?;
        afc_env = vec![
            ("INBOX_TOPIC_PREFIX", prefix),
            ("INBOX_AFC_KEY", aes_key),
            (
                "INBOX_AFC_PUBLIC_KEY",
                e2e::afc::AfcEmulator::public_key(&keys)
                    .display()
                    .to_string(),
            ),
        ];
        Some(emulator)
    } else {
        println!("afc: builtin rules");
        None
    };
    println!("starting the engine (workflow, communication, gateway)...");
    let engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_SPEC", spec.display().to_string()),
            // The benchmark measures the engine, not the per-client rate limiter.
            ("INBOX_RATE_LIMIT_PER_SECOND", "0".into()),
            // Warnings only, but the start-up lines the harness waits for (info, crate roots).
            (
                "RUST_LOG",
                "warn,rdkafka=error,workflow=info,communication=info,gateway=info,platform::ops=info,\
                 workflow::activities=warn,communication::http=warn,communication::delivery=warn,\
                 gateway::client=warn,gateway::manager=warn,gateway::stream=warn"
                    .into(),
            ),
        ]
        .into_iter()
        .chain(afc_env)
        .collect::<Vec<_>>(),
    )
    .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&engine.database_url)
        .await?;
    let durable = durability(&pool).await?;
    println!("postgres: {durable}");
    let setting = |k: &str| std::env::var(k).unwrap_or_else(|_| "default".into());
    println!(
        "kafka: partitions {}, inbound consumer wait {} ms",
        setting("INBOX_KAFKA_PARTITIONS"),
        setting("INBOX_KAFKA_SOURCE_WAIT_MS"),
    );
    let mut components: Vec<Component> = engine
        .pids()
        .into_iter()
        .filter_map(|(name, pid)| {
            Some(Component {
                name: name.into(),
                pid: pid?,
                with_children: false,
            })
        })
        .collect();
    components.extend(
        procs::stack_components(&repo_root())
            .into_iter()
            .filter(|c| durable_pg.is_none() || c.name != "postgres"),
    );
    if let Some(pid) = emulator.as_ref().and_then(e2e::afc::AfcEmulator::pid) {
        components.push(Component {
            name: "afc-emulator".into(),
            pid,
            with_children: false,
        });
    }
    if let Some(pid) = durable_pg
        .as_ref()
        .and_then(|pg| procs::pid_in(&pg.pid_file()))
    {
        components.push(Component {
            name: "postgres".into(),
            pid,
            with_children: true,
        });
    }

    // The floor, idle, one sample after another.
    println!(
        "measuring the floor ({} samples each)...",
        args.floor_samples
    );
    let prefix = engine_prefix(&engine)?;
    let kafka = floor::kafka(
        &stack.kafka_brokers,
        &format!("{prefix}bench.floor"),
        args.floor_samples,
    )
    .await?;
    tfloor.start(args.floor_workflows.max(1)).await?;
    let tfloor = Arc::new(tfloor);
    let mut temporal = Vec::new();
    for i in 0..args.floor_samples {
        temporal.push(tfloor.round_trip(i).await?);
    }
    let postgres = floor::postgres(&engine.database_url, args.floor_samples).await?;
    let (k, t, p) = (
        Summary::of(&kafka),
        Summary::of(&temporal),
        Summary::of(&postgres),
    );
    let floors = Floors {
        kafka_ms: k,
        temporal_ms: t,
        postgres_ms: p,
        sum_ms: k.plus(&t).plus(&p),
    };

    // Managers get ready and follow their streams; every client opens a ticket.
    let edge = Arc::new(Edge::connect(&engine.http, &engine.grpc, 4).await?);
    let clock = Arc::new(Clock::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut manager_tasks = Vec::new();
    for i in 0..managers {
        let token = stack.token(
            Role::Manager,
            &format!("bench-m{i}-{run_id}"),
            &format!("Manager {i}"),
        )?;
        let mut m = ManagerServiceClient::new(edge.channel());
        for _ in 0..capacity {
            m.set_ready(authed(&token, v1::SetReadyRequest {})).await?;
        }
        manager_tasks.push(tokio::spawn(load::manager(
            edge.clone(),
            token,
            clock.clone(),
            args.reply_every,
            stop_rx.clone(),
        )));
    }
    let clients: Vec<Arc<BenchClient>> = (0..args.tickets)
        .map(|i| {
            Ok(Arc::new(BenchClient {
                token: stack.token(
                    Role::Client,
                    &format!("bench-c{i}-{run_id}"),
                    &format!("Client {i}"),
                )?,
                // Spread evenly: client i writes over gRPC when the running share steps up.
                grpc: i * args.grpc_percent / 100 != (i + 1) * args.grpc_percent / 100,
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    println!(
        "opening {} tickets over {managers} managers (capacity {capacity} each)...",
        clients.len()
    );
    let setup_started = Instant::now();
    let opened: Vec<anyhow::Result<String>> = futures::stream::iter(clients.iter().cloned())
        .map(|c| {
            let edge = edge.clone();
            async move { edge.send(&c, "Hello, I have a question".into()).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in opened {
        r.context("opening a ticket")?;
    }
    let deadline = Instant::now() + Duration::from_secs(args.setup_secs);
    loop {
        let assigned: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'assigned'")
                .fetch_one(&pool)
                .await?;
        if assigned as usize >= clients.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {assigned} of {} tickets assigned within {} s",
            clients.len(),
            args.setup_secs
        );
        // A benchmark's progress poll, not a test's wait.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    // Steady state: every ticket has had its first reply (the one reply its workflow hears), and
    // the workflows have heard every lifecycle change (Temporal calls have stopped) before the
    // idle window and the sweep. Replies straight through the store, as the gateway writes them.
    let store = tickets::PgStore::from_pool(pool.clone());
    let assigned: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, manager_id FROM tickets WHERE status = 'assigned'")
            .fetch_all(&pool)
            .await?;
    let first_replies: Vec<anyhow::Result<uuid::Uuid>> = futures::stream::iter(assigned)
        .map(|(ticket, manager)| {
            let store = store.clone();
            async move {
                let caller = tickets::Caller {
                    user_id: manager,
                    roles: vec![Role::Manager],
                    display_name: "Manager".into(),
                };
                Ok(store
                    .send_reply(
                        &caller,
                        ticket,
                        &format!("bench-first-reply-{ticket}"),
                        "Hello, how can I help?",
                    )
                    .await?)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in first_replies {
        r.context("a first reply")?;
    }
    let calls = std::cell::Cell::new(temporal_calls(&engine).await?);
    until_quiet(deadline, "the ticket workflows", || async {
        let now = temporal_calls(&engine).await?;
        Ok(calls.replace(now) == now)
    })
    .await?;
    println!(
        "first replies sent and the workflows quiet after {:.1} s",
        setup_started.elapsed().as_secs_f64()
    );
    // The worker still runs the setup's workflow tasks after the engine's calls stopped (and
    // Temporal with it): the idle window and the steps start once both are quiet too.
    let backlog: Vec<&Component> = components
        .iter()
        .filter(|c| c.name == "temporal" || c.name == "workflow")
        .collect();
    let mut used: Vec<f64> = backlog.iter().map(|c| procs::cpu_seconds(c)).collect();
    until_quiet(deadline, "Temporal and the workflow service", || {
        let now: Vec<f64> = backlog.iter().map(|c| procs::cpu_seconds(c)).collect();
        // Under 15 % of a core each over the last second.
        let calm = now.iter().zip(&used).all(|(n, u)| n - u < 0.15);
        used = now;
        std::future::ready(Ok(calm))
    })
    .await?;
    println!(
        "Temporal and the workflow service quiet after {:.1} s",
        setup_started.elapsed().as_secs_f64()
    );
    let mut assign_ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM assigned_at - waiting_since) * 1000)::float8 FROM tickets
         WHERE assigned_at IS NOT NULL AND waiting_since IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    let assignment_ms = Summary::of_ms(&mut assign_ms);
    let mut open_ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM t.assigned_at - m.created_at) * 1000)::float8
         FROM tickets t JOIN messages m ON m.ticket_id = t.id AND m.author = 'client'
         WHERE t.assigned_at IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    let first_message_to_assigned_ms = Summary::of_ms(&mut open_ms);
    println!(
        "{} tickets open and assigned in {setup_secs:.1} s ({:.1} tickets/s)",
        clients.len(),
        clients.len() as f64 / setup_secs
    );

    // Idle: what each process costs with every ticket open and nothing happening (the broker's
    // polling consumers above all).
    let idle = if args.idle_secs > 0 {
        println!("idle for {} s...", args.idle_secs);
        let (stop, rx) = watch::channel(false);
        let usage = tokio::spawn(procs::watch_usage(
            components.clone(),
            Duration::from_millis(500),
            rx,
        ));
        // A benchmark's measuring window, not a test's wait.
        tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
        stop.send_replace(true);
        let idle = usage.await?;
        let parts: Vec<String> = idle
            .iter()
            .map(|(n, u)| format!("{n} {:.1} %", u.avg_cpu_pct))
            .collect();
        println!("idle CPU (100 % = one core): {}", parts.join("  "));
        Some(idle)
    } else {
        None
    };

    // The sweep.
    let lag_consumer: Arc<BaseConsumer> =
        Arc::new(platform::kafka::config(&stack.kafka()).create()?);
    let inbound_topic = format!("{prefix}inbound.messages");
    let counter = AtomicU64::new(0);
    let mut steps = Vec::new();
    for &rate in &args.rates {
        println!("rate {rate} msg/s for {} s...", args.duration);
        let (usage_stop, usage_rx) = watch::channel(false);
        let usage = tokio::spawn(procs::watch_usage(
            components.clone(),
            Duration::from_millis(500),
            usage_rx.clone(),
        ));
        let lag = {
            let (consumer, pool, topic, mut stop) = (
                lag_consumer.clone(),
                pool.clone(),
                inbound_topic.clone(),
                usage_rx,
            );
            tokio::spawn(async move {
                let mut max = 0;
                while !*stop.borrow() {
                    if let Ok(l) = load::kafka_lag(consumer.clone(), &pool, &topic).await {
                        max = max.max(l);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => {}
                    }
                }
                max
            })
        };
        let calls_before = temporal_calls(&engine).await?;
        let (mut figures, ids) = load::step(
            &edge,
            &clients,
            &clock,
            rate,
            Duration::from_secs(args.duration),
            Duration::from_secs(args.drain_secs),
            args.max_inflight,
            &counter,
        )
        .await;
        usage_stop.send_replace(true);
        let calls = temporal_calls(&engine).await? - calls_before;
        let resources = usage.await?;
        figures.max_kafka_lag = lag.await?;
        figures.afc_ms = load::afc_latency(&pool, &ids).await?;
        figures.stages = load::stages(&pool, &ids, &clock).await?;
        figures.open_tickets = load::open_tickets(&pool).await?;

        let at_rate = if args.floor_at_rate_secs > 0 {
            Some(temporal_floor_at_rate(&tfloor, rate, args.floor_at_rate_secs).await?)
        } else {
            None
        };
        let l = figures.latency_ms;
        steps.push(Step {
            temporal_calls_per_message: calls / (figures.accepted.max(1) as f64),
            e2e_p50_over_floor_p50: ratio(l.p50, floors.sum_ms.p50),
            e2e_p99_over_floor_p99: ratio(l.p99, floors.sum_ms.p99),
            e2e_p99_over_temporal_floor_p99: ratio(l.p99, floors.temporal_ms.p99),
            e2e_p99_over_temporal_floor_at_rate_p99: at_rate.map(|f| ratio(l.p99, f.p99)),
            temporal_floor_at_rate_ms: at_rate,
            figures,
            resources,
        });
    }
    stop_tx.send_replace(true);
    for m in manager_tasks {
        let _ = m.await;
    }
    tfloor.stop().await;

    let replies = clock.replies.load(std::sync::atomic::Ordering::Relaxed);
    let reply_errors = clock
        .reply_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    print_report(
        &floors,
        &steps,
        assignment_ms,
        first_message_to_assigned_ms,
        replies,
        reply_errors,
    );
    let report = json!({
        "started_at": chrono::Utc::now(),
        "machine": machine,
        "args": args,
        "engine": engine_build(),
        "postgres": durable,
        "afc": if args.afc_kafka { "kafka" } else { "builtin" },
        "floors": floors,
        "setup": {
            "tickets": clients.len(),
            "seconds": setup_secs,
            "waiting_to_assigned_ms": assignment_ms,
            "first_message_stored_to_assigned_ms": first_message_to_assigned_ms,
        },
        "manager_replies": { "sent": replies, "failed": reply_errors },
        "idle": idle,
        "steps": steps,
    });
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join(format!(
        "{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("JSON: {}", file.display());
    Ok(())
}

/// Calls to the Temporal frontend so far, summed over the services that make them.
/// Until `calm` (asked once a second) held 3 times in a row; an error past `deadline`.
async fn until_quiet<F, Fut>(deadline: Instant, what: &str, mut calm: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let mut quiet = 0;
    while quiet < 3 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} were still busy at the setup deadline"
        );
        // A benchmark's progress poll, not a test's wait.
        tokio::time::sleep(Duration::from_secs(1)).await;
        quiet = if calm().await? { quiet + 1 } else { 0 };
    }
    Ok(())
}

async fn temporal_calls(engine: &Engine) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let mut total = 0.0;
    for s in [e2e::Service::Workflow, e2e::Service::Gateway] {
        let page = http
            .get(format!("{}/metrics", engine.ops(s)))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        total += page
            .lines()
            .filter(|l| l.starts_with("inbox_temporal_calls_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(total)
}

/// Whether PostgreSQL ran durable (`fsync`, `synchronous_commit`): the dev cluster runs with
/// `fsync=off` for test speed, which flatters every commit.
async fn durability(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(pool).await?;
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await?;
    Ok(format!("fsync={fsync} synchronous_commit={sync}"))
}

/// Which build of the engine ran: the services are the binaries beside this one.
fn engine_build() -> String {
    let profile = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.file_name()?.to_str()?.to_owned()))
        .unwrap_or_default();
    match profile.as_str() {
        "release" => {
            "release build of the workspace (`make bench ARGS=--release`), on the dev stack".into()
        }
        _ => "debug build of the workspace (as `make run` runs it), on the dev stack".into(),
    }
}

/// The engine's topic prefix (the harness gives each engine its own).
fn engine_prefix(engine: &Engine) -> anyhow::Result<String> {
    let db = engine
        .database_url
        .rsplit('/')
        .next()
        .context("database url without a name")?;
    // The harness names the database and the topic prefix with the same tag.
    Ok(format!("{db}."))
}

/// Signals spread over the floor workflows at `rate`/s for `secs`: the Temporal floor under the
/// same load as the engine step (run after it, not beside it).
async fn temporal_floor_at_rate(
    tfloor: &Arc<floor::TemporalFloor>,
    rate: f64,
    secs: u64,
) -> anyhow::Result<Summary> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let f = tfloor.clone();
        tasks.spawn(async move { f.round_trip(i).await });
        i += 1;
    }
    let mut out = Vec::new();
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(d) => out.push(d),
            // One lost sample does not void the run: counted and said.
            Err(e) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("bench: temporal floor at {rate}/s: {e}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("bench: temporal floor at {rate}/s: {failed} round trips failed");
    }
    Ok(Summary::of(&out))
}

fn row(name: &str, s: &Summary) {
    println!(
        "  {name:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        s.p50, s.p95, s.p99, s.max
    );
}

fn print_report(
    floors: &Floors,
    steps: &[Step],
    assignment: Summary,
    first_to_assigned: Summary,
    replies: usize,
    reply_errors: usize,
) {
    println!();
    println!("floor (idle, sequential)                 p50 ms   p95 ms   p99 ms   max ms");
    row("kafka produce->consume", &floors.kafka_ms);
    row("temporal signal->local activity", &floors.temporal_ms);
    row("postgres insert commit", &floors.postgres_ms);
    row("sum", &floors.sum_ms);
    row("assignment: waiting->assigned", &assignment);
    row("first message stored->assigned", &first_to_assigned);
    println!();
    println!(
        "rate/s  acc/s  accepted  errors  shed  unseen |  e2e p50   p95    p99    max  | xfloor p50 p99 | t@rate p99  x | afc p99  lag  open | temporal/msg"
    );
    for s in steps {
        let f = &s.figures;
        let l = f.latency_ms;
        let at = s.temporal_floor_at_rate_ms.map_or(0.0, |t| t.p99);
        println!(
            "{:>6.0} {:>6.1} {:>9} {:>7} {:>5} {:>7} | {:>7.1} {:>6.1} {:>6.1} {:>6.1} | {:>9.1} {:>4.1} | {:>9.1} {:>4.1} | {:>7.1} {:>4} {:>5} | {:>6.3}",
            f.target_rate,
            f.accepted_per_s,
            f.accepted,
            f.send_errors,
            f.shed,
            f.not_visible_after_drain,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            s.e2e_p50_over_floor_p50,
            s.e2e_p99_over_floor_p99,
            at,
            s.e2e_p99_over_temporal_floor_at_rate_p99.unwrap_or(0.0),
            f.afc_ms.p99,
            f.max_kafka_lag,
            f.open_tickets,
            s.temporal_calls_per_message,
        );
    }
    println!();
    println!(
        "stages p50/p99 ms: accepted->stored (inbound consumer) | stored->visible written (inbound transaction) | written->published (relay) | written->in stream"
    );
    for s in steps {
        let g = &s.figures.stages;
        let pair = |x: &Summary| format!("{:>7.1} {:>7.1}", x.p50, x.p99);
        println!(
            "{:>6.0}/s  {} | {} | {} | {}",
            s.figures.target_rate,
            pair(&g.accepted_to_stored_ms),
            pair(&g.stored_to_visible_ms),
            pair(&g.visible_to_published_ms),
            pair(&g.visible_to_stream_ms),
        );
    }
    println!();
    println!(
        "resources per step: peak memory (PSS) MB / avg CPU % / peak CPU % (100 % = one core)"
    );
    for s in steps {
        let parts: Vec<String> = s
            .resources
            .iter()
            .map(|(n, u)| {
                format!(
                    "{n} {:.0}/{:.0}/{:.0}",
                    u.peak_rss_mb, u.avg_cpu_pct, u.peak_cpu_pct
                )
            })
            .collect();
        println!("{:>6.0}/s  {}", s.figures.target_rate, parts.join("  "));
    }
    // The knee: the first rate the engine did not keep up with (or whose p99 passed 250 ms).
    let knee = steps.iter().find(|s| {
        let f = &s.figures;
        f.accepted_per_s < 0.9 * f.target_rate
            || f.latency_ms.p99 > 250.0
            || f.not_visible_after_drain > 0
    });
    match knee {
        Some(s) => {
            let busiest = s
                .resources
                .iter()
                .max_by(|a, b| a.1.avg_cpu_pct.total_cmp(&b.1.avg_cpu_pct))
                .map(|(n, u)| format!("{n} ({:.0} % CPU)", u.avg_cpu_pct))
                .unwrap_or_default();
            println!(
                "knee: at or below {:.0} msg/s (p99 {:.0} ms, {:.1} accepted/s, lag {}); busiest: {busiest}",
                s.figures.target_rate,
                s.figures.latency_ms.p99,
                s.figures.accepted_per_s,
                s.figures.max_kafka_lag
            );
        }
        None => println!("knee: not reached (every rate kept up with p99 <= 250 ms)"),
    }
    println!("manager replies: {replies} sent, {reply_errors} failed");
}
