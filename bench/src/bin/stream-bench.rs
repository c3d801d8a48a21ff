//! `stream-bench`: N concurrent `ClientService.StreamEvents` subscribers on one gateway while events
//! are produced at a steady rate; prints the gateway's resident memory and the fan-out latency
//! (event committed in PostgreSQL → received by its subscriber), p50/p99/max. It asserts nothing:
//! the figures are for a reader (issue 6 target: 10,000 streams under 1 GB RSS, p99 under 50 ms at
//! 1,000 events/s).
//!
//! It starts its own gateway process (the `gateway` binary next to this one, so build both with the
//! same profile: `cargo build --release -p gateway -p bench --bins`) on the dev stack (`scripts/stack.sh up`; `make run` need not run), with a fresh
//! database and topic prefix, and runs the outbox relay (what the workflow service does) in this
//! process. Events are `message_accepted` events of the subscribers' own messages, written through
//! the store in one transaction per 10 ms (as the inbound consumer batches a poll), round-robin over
//! the subscribers: each event wakes exactly one stream.
//!
//! ```sh
//! cargo build --release -p gateway -p bench --bins
//! cargo run --release -p bench --bin stream-bench -- --streams 10000 --rate 1000 --seconds 20
//! ```

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use proto::v1::{self, client_service_client::ClientServiceClient};
use sqlx::Connection;
use tickets::{NewClientMessage, PgStore, Role};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

struct Args {
    streams: usize,
    rate: u32,
    seconds: u64,
    /// Streams per HTTP/2 connection.
    per_connection: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        streams: 1000,
        rate: 200,
        seconds: 15,
        per_connection: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--streams" => a.streams = value()?.parse()?,
            "--rate" => a.rate = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--per-connection" => a.per_connection = value()?.parse()?,
            "-h" | "--help" => {
                println!(
                    "stream-bench [--streams N (1000)] [--rate EVENTS_PER_S (200)] \
                     [--seconds S (15)] [--per-connection STREAMS (100)]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    anyhow::ensure!(
        a.streams > 0 && a.rate > 0 && a.per_connection > 0,
        "counts must be positive"
    );
    Ok(a)
}

/// Producer transactions in flight at most.
const WRITERS: usize = 8;

fn var(k: &str, default: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| default.to_owned())
}

/// Resident set size of a process in bytes (Linux `/proc`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Starts the gateway binary next to this executable; returns it and its gRPC address.
async fn start_gateway(envs: &[(&str, String)]) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("no executable directory")?
        .join("gateway");
    if !path.exists() {
        bail!(
            "{} is missing: build it with the same profile (`cargo build --release -p gateway -p bench --bins`)",
            path.display()
        );
    }
    let mut child = Command::new(&path)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn,gateway=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let marker = "gateway listening on grpc://";
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(i) = line.find(marker) {
                return line[i + marker.len()..]
                    .split_whitespace()
                    .next()
                    .map(str::to_owned);
            }
            eprintln!("[gateway] {line}");
        }
        None
    })
    .await
    .context("the gateway was not ready within 60 s")?
    .context("the gateway exited before it was ready")?;
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[gateway] {line}");
        }
    });
    Ok((child, addr))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let database_url = var(
        "INBOX_DATABASE_URL",
        "postgres://postgres@127.0.0.1:15432/inbox",
    );
    let brokers = var("INBOX_KAFKA_BROKERS", "127.0.0.1:19093");
    let temporal_url = var("INBOX_TEMPORAL_URL", "http://127.0.0.1:17240");
    let secret = var("INBOX_JWT_SECRET", "dev-secret-change-me-0123456789abcdef");
    let issuer = var("INBOX_JWT_ISSUER", "inbox-dev");

    // A database and topics of its own on the dev stack.
    let tag = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&database_url)
        .await
        .with_context(|| format!("PostgreSQL at {database_url}: run `scripts/stack.sh up`"))?;
    sqlx::query(&format!("CREATE DATABASE \"{tag}\""))
        .execute(&mut admin)
        .await?;
    // Commits without waiting for the disk: the producer's write rate is not what is measured.
    sqlx::query(&format!(
        "ALTER DATABASE \"{tag}\" SET synchronous_commit = off"
    ))
    .execute(&mut admin)
    .await?;
    let base = database_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .context("database url has no database name")?;
    let db_url = format!("{base}/{tag}");
    let store = PgStore::connect(&db_url).await?;
    store.migrate().await?;
    let topics = platform::kafka::Topics::with_prefix(&format!("{tag}."));
    let kafka = platform::kafka::KafkaSettings::plaintext(&brokers);
    platform::kafka::ensure_topics(&kafka, &topics.all())
        .await
        .with_context(|| format!("Kafka at {brokers}: run `scripts/stack.sh up`"))?;

    let spec = platform::workspace_root().join("workflows.yaml");
    let envs = [
        ("INBOX_DATABASE_URL", db_url.clone()),
        ("INBOX_KAFKA_BROKERS", brokers.clone()),
        ("INBOX_TOPIC_PREFIX", format!("{tag}.")),
        ("INBOX_TEMPORAL_URL", temporal_url.clone()),
        ("INBOX_TASK_QUEUE", tag.clone()),
        ("INBOX_JWT_SECRET", secret.clone()),
        ("INBOX_JWT_ISSUER", issuer.clone()),
        ("INBOX_SPEC", spec.display().to_string()),
        ("INBOX_GRPC_ADDR", "127.0.0.1:0".into()),
        ("INBOX_GATEWAY_OPS_ADDR", "127.0.0.1:0".into()),
    ];
    let (gateway, addr) = start_gateway(&envs).await?;
    let pid = gateway.id().context("gateway pid")?;
    let idle_rss = rss_bytes(pid).unwrap_or(0);

    // The outbox relay, as the workflow service runs it.
    let stop = CancellationToken::new();
    let relay = workflow::relay::Relay {
        store: store.clone(),
        signals: workflow::relay::WorkflowSignals {
            store: store.clone(),
            tickets: workflow::client::Tickets {
                client: workflow::client::connect(
                    &platform::settings::temporal::TemporalSettings::plain(
                        temporal_url.parse()?,
                        &tag,
                    ),
                    "stream-bench",
                )
                .await?,
                task_queue: tag.clone(),
            },
            // The bench's events are message events: nothing it writes opens a ticket.
            spec: spec::Spec::load(&platform::workspace_root().join("workflows.yaml"))?.ticket,
            history_limit: None,
        },
        producer: platform::kafka::producer_config(&kafka).create()?,
        topic: topics.ticket_events.clone(),
    };
    tokio::spawn(relay.run(stop.clone()));

    // The subscribers: one client each, `per_connection` streams per HTTP/2 connection.
    let connect_start = Instant::now();
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..args.streams.div_ceil(args.per_connection) {
        channels.push(
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<u64>();
    let errors = Arc::new(AtomicU64::new(0));
    let opening = Arc::new(Semaphore::new(200));
    let mut opened = Vec::new();
    for i in 0..args.streams {
        let mut client = ClientServiceClient::new(channels[i / args.per_connection].clone());
        let token = edge::auth::issue_dev_token(
            secret.as_bytes(),
            &issuer,
            &format!("{tag}-c{i}"),
            None,
            &[Role::Client],
            3600 * 4,
        )?;
        let lat_tx = lat_tx.clone();
        let errors = errors.clone();
        let opening = opening.clone();
        opened.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let mut req = tonic::Request::new(v1::StreamEventsRequest { after_cursor: 0 });
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| anyhow::anyhow!("bad token"))?;
            req.metadata_mut().insert("authorization", bearer);
            let mut stream = client.stream_events(req).await?.into_inner();
            drop(permit);
            tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(e) => {
                            let now = chrono::Utc::now();
                            if let Some(t) = e.created_at {
                                let sent = chrono::DateTime::from_timestamp(
                                    t.seconds,
                                    u32::try_from(t.nanos).unwrap_or(0),
                                )
                                .unwrap_or(now);
                                let micros = (now - sent).num_microseconds().unwrap_or(0).max(0);
                                let _ = lat_tx.send(u64::try_from(micros).unwrap_or(0));
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
            anyhow::Ok(())
        }));
    }
    for o in opened {
        o.await??;
    }
    drop(lat_tx);
    let connected = connect_start.elapsed();
    let streams_rss = rss_bytes(pid).unwrap_or(0);
    println!(
        "{} streams open on {} connections in {:.1} s; gateway RSS idle {:.0} MB, with streams {:.0} MB",
        args.streams,
        channels.len(),
        connected.as_secs_f64(),
        mb(idle_rss),
        mb(streams_rss)
    );

    // The producer: `rate` events per second, round-robin over the subscribers' clients, written
    // as the inbound consumer writes them: what arrived in each 10 ms slot in one transaction (a
    // transaction per event costs PostgreSQL more CPU than the whole fan-out on this machine).
    let slots = u64::from(args.rate.min(100));
    let total = args.rate as u64 * args.seconds;
    let produced = Arc::new(AtomicU64::new(0));
    let writers = Arc::new(Semaphore::new(WRITERS));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / slots as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let produce_start = Instant::now();
    let mut peak_rss = streams_rss;
    let mut next_sample = Instant::now();
    let mut n = 0u64;
    for slot in 0..slots * args.seconds {
        tick.tick().await;
        // Events due by the end of this slot.
        let due = (total * (slot + 1) / (slots * args.seconds)).min(total);
        let batch: Vec<NewClientMessage> = (n..due)
            .map(|k| {
                let client_id = format!("{tag}-c{}", k as usize % args.streams);
                NewClientMessage::from_source(
                    "web",
                    format!("{client_id}/{k}"),
                    &client_id,
                    "",
                    "bench",
                )
            })
            .collect();
        n = due;
        let permit = writers.clone().acquire_owned().await?;
        let store = store.clone();
        let produced = produced.clone();
        tokio::spawn(async move {
            for chunk in batch.chunks(tickets::inbound::MAX_INBOUND_BATCH) {
                match store.record_inbound_batch(chunk).await {
                    Ok(stored) => {
                        produced.fetch_add(stored as u64, Ordering::Relaxed);
                    }
                    Err(e) => eprintln!("write failed: {e}"),
                }
            }
            drop(permit);
        });
        if Instant::now() >= next_sample {
            peak_rss = peak_rss.max(rss_bytes(pid).unwrap_or(0));
            next_sample = Instant::now() + Duration::from_millis(500);
        }
    }
    let _ = writers.acquire_many(WRITERS as u32).await?;
    let produce_secs = produce_start.elapsed().as_secs_f64();
    let produced = produced.load(Ordering::Relaxed);

    // Collect until every event arrived or nothing came for 10 s.
    let mut latencies = Vec::with_capacity(usize::try_from(produced).unwrap_or(0));
    while (latencies.len() as u64) < produced {
        match tokio::time::timeout(Duration::from_secs(10), lat_rx.recv()).await {
            Ok(Some(l)) => latencies.push(l),
            _ => break,
        }
        if latencies.len() % 1000 == 0 {
            peak_rss = peak_rss.max(rss_bytes(pid).unwrap_or(0));
        }
    }
    peak_rss = peak_rss.max(rss_bytes(pid).unwrap_or(0));
    latencies.sort_unstable();
    println!(
        "produced {produced} events in {produce_secs:.1} s ({:.0}/s); delivered {}; stream errors {}",
        produced as f64 / produce_secs,
        latencies.len(),
        errors.load(Ordering::Relaxed)
    );
    println!(
        "fan-out latency (commit -> subscriber): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "gateway RSS: peak {:.0} MB ({:.1} KB per stream over idle)",
        mb(peak_rss),
        (peak_rss.saturating_sub(idle_rss)) as f64 / 1024.0 / args.streams as f64
    );
    println!(
        "target (issue 6): 10000 streams < 1024 MB RSS, p99 < 50 ms at 1000 events/s{}",
        if cfg!(debug_assertions) {
            " (this is a debug build: use --release for figures that count)"
        } else {
            ""
        }
    );

    stop.cancel();
    drop(gateway);
    store.pool().close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{tag}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
